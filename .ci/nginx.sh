#!/usr/bin/env bash
# deploy/nginx.conf, run: Debian's nginx with that file (its ports, certificate paths and
# upstream moved onto this machine's loopback) in front of the release binary. Checks that the
# file loads (nginx -t), that requests reach the instance over TLS, that nginx's own rate-limit
# refusal is the API's 429 envelope with Retry-After, that its body-size refusal is the 413
# envelope, and that /metrics is served to a private address.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${AURAVITA_BIN:-$PWD/target/release/auravita}"
if ! command -v nginx >/dev/null 2>&1; then
  echo "nginx: installing Debian's nginx-light"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nginx-light >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq nginx-light >/dev/null; }
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

WORK="$(mktemp -d)"
APP_PORT=18791; HTTPS_PORT=18793; HTTP_PORT=18792
cleanup() {
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -n "${APP:-}" ] && kill "$APP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=auravita.example.org" \
  -keyout "$WORK/privkey.pem" -out "$WORK/fullchain.pem" >/dev/null 2>&1

# The deployed file, moved onto loopback ports: everything else as written.
sed -e "s#server 127.0.0.1:808[123] #server 127.0.0.1:$APP_PORT #" \
    -e "s#listen 443 ssl http2;#listen 127.0.0.1:$HTTPS_PORT ssl http2;#" \
    -e "s#listen 80;#listen 127.0.0.1:$HTTP_PORT;#" \
    -e "/listen \[::\]/d" \
    -e "s#/etc/ssl/auravita/#$WORK/#" \
    deploy/nginx.conf | awk '!(/server 127.0.0.1:/ && seen++)' > "$WORK/site.conf"
cat > "$WORK/nginx.conf" <<EOF
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    include $WORK/site.conf;
}
EOF
"$NGINX" -t -q -c "$WORK/nginx.conf" -p "$WORK"

AURAVITA_DATA_DIR="$WORK/data" AURAVITA_BIND="127.0.0.1:$APP_PORT" AURAVITA_TRUST_PROXY=true \
  AURAVITA_PUBLIC_URL="https://auravita.example.org" AURAVITA_SMS_OUTBOX="$WORK/outbox.jsonl" \
  RUST_LOG=warn "$BIN" serve >"$WORK/app.log" 2>&1 &
APP=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$APP_PORT/health/ready" >/dev/null && break; sleep 0.1; done
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK"

BASE="https://auravita.example.org:$HTTPS_PORT"
CURL=(curl -s --cacert "$WORK/fullchain.pem" --resolve "auravita.example.org:$HTTPS_PORT:127.0.0.1")
fail() { cat "$WORK/error.log" >&2 2>/dev/null; echo "nginx: $*" >&2; exit 1; }

status=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$BASE/health/live")
[ "$status" = 200 ] || fail "/health/live through nginx answered $status"

# Past 10 requests a second with bursts of 20, nginx refuses: in the envelope, with Retry-After.
# (Requests the application answers itself without a limit of its own: an unknown /auth route.)
got429=""
for _ in $(seq 1 60); do
  "${CURL[@]}" -D "$WORK/h" -o "$WORK/b" "$BASE/auth/no-such-route" || true
  if head -1 "$WORK/h" | grep -q ' 429'; then got429=1; break; fi
done
[ -n "$got429" ] || fail "60 quick /auth requests were never refused with 429"
grep -qi '^retry-after: 1' "$WORK/h" || fail "nginx's 429 has no Retry-After: $(cat "$WORK/h")"
grep -qi '^content-type: application/json' "$WORK/h" || fail "nginx's 429 is not JSON: $(cat "$WORK/h")"
python3 - "$WORK/b" <<'PY' || fail "nginx's 429 body is not the envelope: $(cat "$WORK/b")"
import json, sys
b = json.load(open(sys.argv[1]))
assert b["success"] is False and b["error"]["code"] == "RATE_LIMITED", b
assert b["error"]["details"]["retry_after"] == 1 and b["timestamp"], b
PY

# Sign-out is never limited: 40 at once on one connection, right after that 429, all answer 200
# (past the /auth zone's burst of 20 at 10 a second).
args=()
for _ in $(seq 1 40); do args+=(-o /dev/null "$BASE/auth/signout"); done
codes=$("${CURL[@]}" -X POST -w '%{http_code}\n' "${args[@]}" | sort | uniq -c | tr -s ' ')
[ "$codes" = " 40 200" ] || fail "40 quick sign-outs answered: $codes"

# A body over client_max_body_size (6 MB): nginx's 413, in the envelope.
head -c 7000000 /dev/zero > "$WORK/big"
status=$("${CURL[@]}" -o "$WORK/b" -w '%{http_code}' -X POST -H 'content-type: application/json' \
  -H "origin: https://auravita.example.org" --data-binary @"$WORK/big" "$BASE/protected/user/updateProfile")
[ "$status" = 413 ] || fail "a 7 MB body answered $status"
python3 -c "import json,sys; b=json.load(open(sys.argv[1])); assert b['error']['code']=='PAYLOAD_TOO_LARGE', b" "$WORK/b" \
  || fail "nginx's 413 body is not the envelope: $(cat "$WORK/b")"

# /metrics: served to this (private) address.
status=$("${CURL[@]}" -o /dev/null -w '%{http_code}' "$BASE/metrics")
[ "$status" = 200 ] || fail "/metrics from loopback answered $status"

# nginx's own answers carry the instances' security headers, and no version anywhere.
grep -qi '^x-content-type-options: nosniff' "$WORK/h" || fail "nginx's 429 lacks nosniff: $(cat "$WORK/h")"
grep -qi '^content-security-policy: ' "$WORK/h" || fail "nginx's 429 lacks a CSP: $(cat "$WORK/h")"
"${CURL[@]}" -D "$WORK/h" -o /dev/null "$BASE/health/live"
if grep -qi '^server: .*[0-9]' "$WORK/h"; then fail "the Server header names a version: $(grep -i '^server' "$WORK/h")"; fi

# A request head past nginx's buffers (a 20 KB header, over HTTP/1.1; HTTP/2 ends such a stream
# instead): 400 in the envelope, not an HTML page.
big=$(head -c 20000 /dev/zero | tr '\0' a)
status=$("${CURL[@]}" --http1.1 -o "$WORK/b" -w '%{http_code}' -H "x-big: $big" "$BASE/health/live" || true)
[ "$status" = 400 ] || fail "a 20 KB header answered $status"
python3 -c "import json,sys; b=json.load(open(sys.argv[1])); assert b['error']['code']=='BAD_REQUEST', b" "$WORK/b" \
  || fail "nginx's 400 is not the envelope: $(cat "$WORK/b")"

# A request line past nginx's buffers (a 10 KB path): 414 in the envelope.
status=$("${CURL[@]}" --http1.1 -D "$WORK/h" -o "$WORK/b" -w '%{http_code}' "$BASE/${big:0:10000}" || true)
[ "$status" = 414 ] || fail "a 10 KB path answered $status"
python3 -c "import json,sys; b=json.load(open(sys.argv[1])); assert b['error']['code']=='URI_TOO_LONG', b" "$WORK/b" \
  || fail "nginx's 414 is not the envelope: $(cat "$WORK/b")"
grep -qi '^x-content-type-options: nosniff' "$WORK/h" || fail "nginx's 414 lacks nosniff: $(cat "$WORK/h")"

# No instance answering: 503 in the envelope with Retry-After, not nginx's 502 page.
kill "$APP"; wait "$APP" 2>/dev/null || true; APP=""
status=$("${CURL[@]}" -D "$WORK/h" -o "$WORK/b" -w '%{http_code}' "$BASE/protected/user/sessionDetail")
[ "$status" = 503 ] || fail "with the instance down, nginx answered $status: $(cat "$WORK/b")"
grep -qi '^retry-after: 5' "$WORK/h" || fail "nginx's 503 has no Retry-After: $(cat "$WORK/h")"
python3 -c "import json,sys; b=json.load(open(sys.argv[1])); assert b['error']['code']=='DEPENDENCY_UNAVAILABLE', b" "$WORK/b" \
  || fail "nginx's 503 is not the envelope: $(cat "$WORK/b")"

echo "nginx: deploy/nginx.conf loads and behaves (TLS; 429, 413, 400, 414 and 503 envelopes with security headers; no version; sign-out unlimited; /metrics)"
