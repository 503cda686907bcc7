# Shared helpers for the benchmark scripts: build, start a server on a fresh database, sign in.
# Everything runs on 127.0.0.1 and stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="$ROOT/target/release/auravita"
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}

need_tools() {
  local missing=()
  for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

build_release() { (cd "$ROOT" && cargo build --release -q); }

# fresh_db sqlite|postgres DATA_DIR -> prints the database URL
fresh_db() {
  if [ "$1" = postgres ]; then
    local name="auravita_bench_$$_$RANDOM"
    psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $name" >/dev/null
    echo "${PG_ADMIN_URL%/*}/$name"
  else
    echo "sqlite://$2/auravita.db"
  fi
}

drop_db() {
  case "$1" in postgres://*) psql -q "$PG_ADMIN_URL" -c "DROP DATABASE IF EXISTS ${1##*/} WITH (FORCE)" >/dev/null ;; esac
}

# start_server DATA_DIR DB_URL PORT -> sets SERVER_PID; extra env may be exported by the caller
start_server() {
  AURAVITA_DATA_DIR="$1" AURAVITA_DATABASE_URL="$2" AURAVITA_BIND="127.0.0.1:$3" \
    AURAVITA_PUBLIC_URL="http://127.0.0.1:$3" AURAVITA_SMS_OUTBOX="$1/outbox.jsonl" \
    AURAVITA_AUTH_IP_PER_MINUTE=1000000 RUST_LOG=warn \
    "$BIN" serve > "$1/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 500); do curl -fs "http://127.0.0.1:$3/health/ready" >/dev/null && return 0; sleep 0.01; done
  echo "server did not become ready; log:" >&2; cat "$1/server.log" >&2; return 1
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

signin_cookie() { python3 "$ROOT/.ci/signin.py" "http://127.0.0.1:$1" "$2/outbox.jsonl" "${3:-patient}"; }
