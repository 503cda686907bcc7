#!/usr/bin/env bash
# Starts a local S3-compatible server that checks SigV4 signatures and presigned-URL expiry
# (s3s-fs), installing it first if missing, and prints the variables the S3 tests read:
#   eval "$(.ci/s3.sh)" && cargo test --test files
# Env: S3_PORT (default 9014), S3_DATA (default target/s3s-data). Idempotent: reuses a running server.
set -euo pipefail

# 0.14.1 is the newest s3s-fs whose rust-version (1.92) this toolchain meets; 0.15+ need 1.96.
S3S_VERSION="${S3S_VERSION:-0.14.1}"
PORT="${S3_PORT:-9014}"
ASKED_PORT=$PORT
DATA="${S3_DATA:-$(pwd)/target/s3s-data}"
BUCKET="${S3_BUCKET:-auravita-test}"
KEY_ID="${S3_ACCESS_KEY_ID:-auravita-test-key}"
SECRET="${S3_SECRET_ACCESS_KEY:-auravita-test-secret-0123456789}"

if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "installing s3s-fs $S3S_VERSION" >&2
    cargo install --locked s3s-fs --version "$S3S_VERSION" --features binary >&2
fi

# s3s-fs keeps one folder per bucket.
mkdir -p "$DATA/$BUCKET"

PIDFILE="$DATA/../s3s-fs.pid"
PORTFILE="$DATA/../s3s-fs.port"
up() { curl -s -o /dev/null "http://127.0.0.1:$PORT/" ; }
ours() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
# Reuse only our own server (one started on this data folder). A server left on the port by
# another checkout serves another folder, perhaps one since deleted: take a free port instead.
if ours && [ -f "$PORTFILE" ]; then PORT=$(cat "$PORTFILE"); fi
if ! { ours && up; }; then
    if up; then
        PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        echo "port $ASKED_PORT is taken by another server; s3s-fs goes on $PORT" >&2
    fi
    nohup s3s-fs --host 127.0.0.1 --port "$PORT" --access-key "$KEY_ID" --secret-key "$SECRET" "$DATA" \
        >"$DATA/../s3s-fs.log" 2>&1 &
    echo $! >"$PIDFILE"
    echo "$PORT" >"$PORTFILE"
    for _ in $(seq 1 50); do
        up && break
        sleep 0.1
    done
    up || { echo "s3s-fs did not start; see $DATA/../s3s-fs.log" >&2; exit 1; }
fi

echo "export AURAVITA_TEST_S3_PID=$(cat "$PIDFILE")"
echo "export AURAVITA_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT"
echo "export AURAVITA_TEST_S3_BUCKET=$BUCKET"
echo "export AURAVITA_TEST_S3_ACCESS_KEY_ID=$KEY_ID"
echo "export AURAVITA_TEST_S3_SECRET_ACCESS_KEY=$SECRET"
