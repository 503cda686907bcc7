#!/usr/bin/env bash
# searchDoctorByName with 100,000 doctors: p50/p99 at a fixed request rate.
#
#   bench/search_doctors.sh sqlite
#   bench/search_doctors.sh postgres postgres://postgres@127.0.0.1:5432/postgres
#
# Builds the release binary, starts it on a fresh database (a temporary SQLite file, or a new
# PostgreSQL database dropped afterwards), seeds the doctors straight through SQL
# (bench/seed_doctors.sql), signs a patient in through the SMS outbox, then drives
# searchDoctorByName with wrk (apt-get install wrk) at RATE requests/s for DURATION, once per
# search term: one matching many names, one matching a thousand, one matching a single name
# (the whole index is scanned), and one matching none.
set -euo pipefail

DB=${1:-sqlite}
ADMIN_URL=${2:-${AURAVITA_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
RATE=${RATE:-100}
DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-4}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
ROOT=$(cd "$(dirname "$0")/.." && pwd)

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is missing: apt-get install -y jq" >&2; exit 1; }

(cd "$ROOT" && cargo build --release --quiet --bin auravita)
BIN="$ROOT/target/release/auravita"

WORK=$(mktemp -d)
PGDB=""
cleanup() {
  [[ -n "${SERVER:-}" ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  [[ -n "$PGDB" ]] && psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $PGDB WITH (FORCE)" >/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

case "$DB" in
  sqlite)
    export AURAVITA_DATABASE_URL="sqlite://$WORK/bench.db"
    run_sql() { sqlite3 "$WORK/bench.db"; }
    ;;
  postgres)
    PGDB="auravita_bench_$$"
    psql "$ADMIN_URL" -qc "CREATE DATABASE $PGDB" >/dev/null
    export AURAVITA_DATABASE_URL="${ADMIN_URL%/*}/$PGDB"
    run_sql() { psql "$AURAVITA_DATABASE_URL" -q -v ON_ERROR_STOP=1 >/dev/null; }
    ;;
  *) echo "usage: $0 sqlite|postgres [postgres admin URL]" >&2; exit 2 ;;
esac

export AURAVITA_DATA_DIR="$WORK" AURAVITA_SMS=console AURAVITA_SMS_OUTBOX="$WORK/outbox.jsonl" \
  AURAVITA_BIND="127.0.0.1:$PORT" AURAVITA_PUBLIC_URL="http://127.0.0.1:$PORT" \
  AURAVITA_AUTH_IP_PER_MINUTE=1000 RUST_LOG=warn

"$BIN" migrate
NOW=$(($(date +%s) * 1000))
started=$(date +%s.%N)
sed "s/NOW_MS/$NOW/g" "$ROOT/bench/seed_doctors.sql" | run_sql
if [[ "$DB" == postgres ]]; then echo "ANALYZE users;" | run_sql; else echo "ANALYZE;" | run_sql; fi
echo "seeded 100,000 doctors in $(echo "$(date +%s.%N) - $started" | bc) s"

"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER=$!
BASE="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -fs "$BASE/health/ready" >/dev/null && break; sleep 0.1; done
kill -0 "$SERVER" 2>/dev/null || { echo "the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }

PHONE="+919812345678"
id=$(curl -fs "$BASE/auth/signup" -H 'content-type: application/json' \
  -d "{\"phone\":\"$PHONE\",\"name\":\"Bench Patient\",\"role\":\"patient\"}" | jq -r .data.id)
code=$(jq -r "select(.to == \"$PHONE\") | .body" "$WORK/outbox.jsonl" | tail -1 | cut -c1-6)
COOKIE=$(curl -fs -D - -o /dev/null "$BASE/auth/signup/verify/$id" -H 'content-type: application/json' \
  -d "{\"otp\":\"$code\"}" | tr -d '\r' | sed -n 's/^set-cookie: \([^;]*\).*/\1/Ip' | head -1)
[[ -n "$COOKIE" ]] || { echo "sign-in failed" >&2; cat "$WORK/server.log" >&2; exit 1; }

# wrk has no rate option: each connection waits CONNECTIONS/RATE seconds between requests.
DELAY_MS=$((1000 * CONNECTIONS / RATE))
cat >"$WORK/rate.lua" <<LUA
function delay() return $DELAY_MS end
LUA

printf '\n%-10s %-26s %8s %8s %8s %8s\n' "database" "name=" "req/s" "p50 ms" "p99 ms" "max ms"
for term in "an" "kapoor" "george%20k.%20ahuja" "zzqx"; do
  url="$BASE/protected/user/searchDoctorByName?name=$term&limit=10"
  hits=$(curl -fs -H "cookie: $COOKIE" "$url" | jq '.data.doctors | length')
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/rate.lua" -H "cookie: $COOKIE" "$url")
  non2xx=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
  [[ -z "$non2xx" ]] || { echo "$out" >&2; echo "errors during the run" >&2; exit 1; }
  to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }
  p50=$(echo "$out" | awk '$1=="50%"{print $2}' | to_ms)
  p99=$(echo "$out" | awk '$1=="99%"{print $2}' | to_ms)
  max=$(echo "$out" | awk '$1=="Latency"{print $4; exit}' | to_ms)
  rps=$(echo "$out" | awk '$1=="Requests/sec:"{printf "%.0f", $2}')
  printf '%-10s %-26s %8s %8s %8s %8s   (%s hits on the first page)\n' "$DB" "${term//%20/ }" "$rps" "$p50" "$p99" "$max" "$hits"
done
