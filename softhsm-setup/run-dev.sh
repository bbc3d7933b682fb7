#!/usr/bin/env bash
# Runs vault and manager in the foreground with the .dev/ configuration; Ctrl-C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
export SOFTHSM2_CONF="$ROOT/.dev/softhsm2.conf"
CA="$ROOT/.dev/tls/ca.pem"

pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT INT TERM

wait_ready() { # url, pid
  for _ in $(seq 1 150); do
    kill -0 "$2" 2>/dev/null || { echo "run: process $2 exited during start-up" >&2; exit 1; }
    curl -sf --cacert "$CA" "$1" >/dev/null && return 0
    sleep 0.2
  done
  echo "run: $1 did not become ready" >&2
  exit 1
}

# vault follows manager's JWKS URL (so signing-key rotation works); it becomes ready once
# manager is up and serving it.
"$BIN/vault" --config "$ROOT/.dev/vault.toml" --manager-jwks https://127.0.0.1:8000/.well-known/jwks.json &
pids+=($!)
wait_ready https://127.0.0.1:8001/healthz "${pids[0]}"
"$BIN/manager" --config "$ROOT/.dev/manager.toml" &
pids+=($!)
wait_ready https://127.0.0.1:8000/readyz "${pids[1]}"
wait_ready https://127.0.0.1:8001/readyz "${pids[0]}"
cat <<MSG

manager: https://127.0.0.1:8000   vault: https://127.0.0.1:8001 (internal mTLS :8002)
CA: $CA — try:
  curl --cacert .dev/tls/ca.pem -H 'content-type: application/json' \\
       -d '{"user_id":"alice","key_data":"s3cret"}' https://127.0.0.1:8000/api/keys
Ctrl-C stops both.
MSG
# Whichever exits first (or Ctrl-C) stops the other.
wait -n "${pids[@]}"
