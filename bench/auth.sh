#!/usr/bin/env bash
# Issue 2 benchmark: authenticated route vs health route (same server, same run), idle RSS, and
# time from process start to ready on a new database; on SQLite and on PostgreSQL.
# usage: bench/auth.sh [seconds per wrk run, default 5; three runs of each route]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-5}
need_tools wrk curl psql
build_release

for backend in sqlite postgres; do
  DATA=$(mktemp -d)
  DB=$(fresh_db "$backend" "$DATA")
  PORT=18900
  t0=$(date +%s%N)
  start_server "$DATA" "$DB" "$PORT"
  t1=$(date +%s%N)
  ready_ms=$(( (t1 - t0) / 1000000 ))
  sleep 1
  idle_rss=$(rss_kb "$SERVER_PID")
  COOKIE=$(signin_cookie "$PORT" "$DATA")
  # Three alternating rounds; the median of each route is reported (single runs on two shared
  # cores vary by ±15%).
  hs=(); as=()
  for _ in 1 2 3; do
    hs+=("$(wrk -t2 -c32 -d"${DURATION}s" "http://127.0.0.1:$PORT/health/live" | awk '/Requests\/sec/ {print $2}')")
    as+=("$(wrk -t2 -c32 -d"${DURATION}s" -H "Cookie: $COOKIE" "http://127.0.0.1:$PORT/protected/user/sessionDetail" | awk '/Requests\/sec/ {print $2}')")
  done
  health=$(printf '%s\n' "${hs[@]}" | sort -g | sed -n 2p)
  authed=$(printf '%s\n' "${as[@]}" | sort -g | sed -n 2p)
  echo "$backend rounds: /health/live ${hs[*]} | sessionDetail ${as[*]}"
  check=$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$PORT/protected/user/sessionDetail")
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
  drop_db "$DB"
  rm -rf "$DATA"
  [ "$check" = 200 ] || { echo "sessionDetail answered $check, not 200: the run measured errors" >&2; exit 1; }
  ratio=$(python3 -c "print(f'{$authed/$health:.2f}')")
  printf '%-9s start-to-ready %4d ms | idle RSS %5.1f MB | /health/live %8.0f req/s | sessionDetail %8.0f req/s | ratio %s\n' \
    "$backend" "$ready_ms" "$(echo "$idle_rss/1024" | bc -l)" "$health" "$authed" "$ratio"
done
