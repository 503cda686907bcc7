#!/usr/bin/env bash
# Starts a local S3-compatible server that checks SigV4 signatures and presigned-URL expiry
# (s3s-fs), installing it first if missing, and prints the variables the S3 tests read:
#   eval "$(.ci/s3.sh)" && cargo test --test files
# Env: S3_PORT (default 9014), S3_DATA (default target/s3s-data). Idempotent: reuses a running server.
set -euo pipefail

# 0.14.1 is the newest s3s-fs whose rust-version (1.92) this toolchain meets; 0.15+ need 1.96.
S3S_VERSION="${S3S_VERSION:-0.14.1}"
PORT="${S3_PORT:-9014}"
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

up() { curl -s -o /dev/null "http://127.0.0.1:$PORT/" ; }
if ! up; then
    nohup s3s-fs --host 127.0.0.1 --port "$PORT" --access-key "$KEY_ID" --secret-key "$SECRET" "$DATA" \
        >"$DATA/../s3s-fs.log" 2>&1 &
    echo $! >"$DATA/../s3s-fs.pid"
    for _ in $(seq 1 50); do
        up && break
        sleep 0.1
    done
    up || { echo "s3s-fs did not start; see $DATA/../s3s-fs.log" >&2; exit 1; }
fi

echo "export AURAVITA_TEST_S3_ENDPOINT=http://127.0.0.1:$PORT"
echo "export AURAVITA_TEST_S3_BUCKET=$BUCKET"
echo "export AURAVITA_TEST_S3_ACCESS_KEY_ID=$KEY_ID"
echo "export AURAVITA_TEST_S3_SECRET_ACCESS_KEY=$SECRET"
