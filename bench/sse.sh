#!/usr/bin/env bash
# Notification streams under load, on one release instance (SQLite by default; set
# AURAVITA_DATABASE_URL=postgres://... to use PostgreSQL):
#   USERS concurrent event streams (default 10000, one per user), then RATE events per second
#   (default 500) for SECS seconds (default 30) for random users. CAUSE picks the real action that
#   raises them: `share` (default; the users are doctors and a few patients share a file with a
#   random one of them for 30 minutes, `file_shared`) or `signin` (the users are patients who sign
#   in again, `new_sign_in`). The client measures from the causing response to the event's arrival
#   on that user's stream, and samples the server's resident memory. Targets: RSS <= 300 MB,
#   p99 <= 100 ms.
# All traffic goes to 127.0.0.1; the run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-10000}
RATE=${RATE:-500}
CAUSE=${CAUSE:-share}
SECS=${SECS:-30}
# A free port, so the client never talks to some other server.
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

# 10,000 streams are 10,000 sockets on each side (plus the load's own connections).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open-file limit: $(ulimit -n)"

cargo build --release --quiet --bin auravita --example sse_bench

DIR=$(mktemp -d)
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $DIR" || rm -rf "$DIR"' EXIT

# Codes are read from the SMS outbox; the per-phone cooldown and hourly cap, the per-IP limit
# on /auth and the per-client connection limit are lifted because every sign-in and every
# stream comes from one client address.
AURAVITA_BIND=127.0.0.1:$PORT \
AURAVITA_DATA_DIR="$DIR" \
AURAVITA_SMS_OUTBOX="$DIR/outbox.jsonl" \
AURAVITA_OTP_COOLDOWN_SECS=0 \
AURAVITA_OTP_PER_HOUR=1000000 \
AURAVITA_OTP_PHONE_PER_HOUR=1000000 \
AURAVITA_AUTH_IP_PER_MINUTE=100000000 \
AURAVITA_MAX_CONNECTIONS_PER_CLIENT=0 \
AURAVITA_DB_MAX_CONNECTIONS=${AURAVITA_DB_MAX_CONNECTIONS:-16} \
RUST_LOG=${RUST_LOG:-warn} \
  ./target/release/auravita serve >"$DIR/server.log" 2>&1 &
SERVER=$!

for _ in $(seq 100); do
  kill -0 "$SERVER" 2>/dev/null || { echo "the server exited:"; cat "$DIR/server.log"; exit 1; }
  curl -fsS "http://127.0.0.1:$PORT/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "server pid $SERVER, idle RSS $(awk '/VmRSS/ {print $2 " " $3}' /proc/$SERVER/status)"

timeout $((SECS + 300)) ./target/release/examples/sse_bench \
  --base "http://127.0.0.1:$PORT" --outbox "$DIR/outbox.jsonl" \
  --users "$USERS" --rate "$RATE" --cause "$CAUSE" --secs "$SECS" --server-pid "$SERVER"

if grep -qiE "error|panic" "$DIR/server.log"; then echo "server errors: $(grep -ciE "request failed" "$DIR/server.log")"
  echo "server log (errors):"; grep -iE "error|panic" "$DIR/server.log" | sed "s/\x1b\[[0-9;]*m//g" | sort | uniq -c | sort -rn | head -5
fi
