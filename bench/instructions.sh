#!/usr/bin/env bash
# Instructions the server executes per request, counted by valgrind's callgrind: fileURL (a link
# issued, its ledger row journaled and later moved into the table) against /health/live, on
# SQLite and the local folder. Unlike req/s on two shared cores, the count barely moves between
# runs or with other load, so it shows a change of a few percent that wall-clock rounds cannot.
# Caveats: under valgrind the threads take turns on one core, so batches form differently than
# natively; and valgrind hides the CPU's SHA extensions, so SHA-256 (the session token's hash,
# the link's HMAC) runs in software and costs ~10x what it does natively.
# usage: bench/instructions.sh [seconds per phase, default 10] [BIN, default the release build]
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
need_tools wrk curl valgrind
if [ -n "${2:-}" ]; then BIN=$2; else build_release; fi
PORT=${BENCH_PORT:-18741}
DATA=$(mktemp -d)
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
AURAVITA_DATA_DIR="$DATA" AURAVITA_BIND="127.0.0.1:$PORT" AURAVITA_PUBLIC_URL="http://127.0.0.1:$PORT" \
  AURAVITA_SMS_OUTBOX="$DATA/outbox.jsonl" RUST_LOG=warn \
  valgrind --tool=callgrind --callgrind-out-file="$DATA/cg.out" --dump-instr=no \
  "$BIN" serve > "$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/health/ready" >/dev/null && break; sleep 0.2; done
COOKIE=$(signin_cookie "$PORT" "$DATA")
printf '%%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%%%EOF\n' > "$DATA/a.pdf"
FILE=$(curl -fs -H "cookie: $COOKIE" -F "file=@$DATA/a.pdf;type=application/pdf" \
  "http://127.0.0.1:$PORT/protected/resource/uploadFile" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["file"]["id"])')
LINK="http://127.0.0.1:$PORT/protected/resource/fileURL/$FILE?o=t"
LIVE="http://127.0.0.1:$PORT/health/live"
# Warm both routes, then count each phase from zero (`-z`) to a dump (`-d`). The link phase
# includes the journal moves that follow it.
wrk -t1 -c32 -d3s -H "cookie: $COOKIE" "$LINK" > /dev/null
wrk -t1 -c32 -d3s "$LIVE" > /dev/null
sleep 2
callgrind_control -z "$SERVER_PID" > /dev/null 2>&1
links=$(wrk -t1 -c32 -d"${SECS}s" -H "cookie: $COOKIE" "$LINK" | awk '/requests in/ {print $1}')
sleep 3
callgrind_control -d link "$SERVER_PID" > /dev/null 2>&1
callgrind_control -z "$SERVER_PID" > /dev/null 2>&1
checks=$(wrk -t1 -c32 -d"${SECS}s" "$LIVE" | awk '/requests in/ {print $1}')
callgrind_control -d live "$SERVER_PID" > /dev/null 2>&1
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
il=$(total "$DATA/cg.out.1"); ih=$(total "$DATA/cg.out.2")
awk -v il="$il" -v ih="$ih" -v nl="$links" -v nh="$checks" 'BEGIN {
  printf "fileURL: %d requests, %.1f k instructions each; /health/live: %d requests, %.1f k each; fileURL costs %.2f health checks\n",
    nl, il / nl / 1000, nh, ih / nh / 1000, (il / nl) / (ih / nh) }'
