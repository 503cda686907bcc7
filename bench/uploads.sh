#!/usr/bin/env bash
# 32 concurrent 5 MB uploads against the release binary on default settings (SQLite, local
# folder): throughput and the server's peak RSS growth over idle (VmHWM - idle VmRSS, target
# <= 64 MB: uploads stream to disk), then download-link issuance (fileURL) vs /health/live,
# with the server's CPU time per request in each phase.
# Usage: bench/uploads.sh [concurrency=32] [bytes=5000000] [seconds=5]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-32}"; SIZE="${2:-5000000}"; SECS="${3:-5}"
PORT="${BENCH_PORT:-18731}"
cargo build --release --quiet
cargo build --release --quiet --example upload_bench
DATA="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
AURAVITA_DATA_DIR="$DATA" AURAVITA_BIND="127.0.0.1:$PORT" AURAVITA_PUBLIC_URL="http://127.0.0.1:$PORT" \
    AURAVITA_SMS_OUTBOX="$DATA/outbox.jsonl" RUST_LOG=warn ./target/release/auravita serve >"$DATA/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.1; done
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
IDLE=$(kb VmRSS)
echo "server idle RSS: $(mb "$IDLE") MB"
BENCH_SERVER_PID=$PID ./target/release/examples/upload_bench "http://127.0.0.1:$PORT" "$DATA/outbox.jsonl" "$N" "$SIZE" "$SECS"
PEAK=$(kb VmHWM)
echo "server peak RSS: $(mb "$PEAK") MB; growth over idle: $(mb $((PEAK - IDLE))) MB (target <= 64 MB)"
echo "stored objects: $(find "$DATA/objects" -type f | wc -l)"
