#!/usr/bin/env bash
# Runs vault and manager in the foreground with the .dev/ configuration; Ctrl-C stops both.
# By default each token is served by its own `p11-kit server` process and the services load
# p11-kit-client.so (isolation mode, the way a network HSM looks to them);
# ISOLATION=0 loads the token's module into the services instead. TOKENS=kryoptic runs them
# on the Kryoptic tokens setup.sh provisions in .dev/kryoptic/ (same labels, keys made there,
# certificates from the same dev CA) instead of SoftHSM2's.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=p11-kit.sh
source "$ROOT/softhsm-setup/p11-kit.sh"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
export SOFTHSM2_CONF="$ROOT/.dev/softhsm2.conf"
CA="$ROOT/.dev/tls/ca.pem"

ISOLATION="${ISOLATION:-1}"
TOKENS="${TOKENS:-softhsm}"
case "$TOKENS" in
  softhsm) CONF="$ROOT/.dev" ;;
  kryoptic)
    CONF="$ROOT/.dev/kryoptic"
    export KRYOPTIC_CONF="$CONF/kryoptic.conf" PKCS11_PROVIDER="$CONF/libkryoptic_pkcs11.so"
    ;;
  *) echo "run: TOKENS is softhsm or kryoptic, not $TOKENS" >&2; exit 2 ;;
esac
RUN="$ROOT/.dev/run"
mkdir -p "$RUN"

pids=()
stop() {
  trap - EXIT INT TERM
  # Token servers were started with setsid: stop their whole process groups.
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
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

token_server() { # token label -> serves it on $RUN/<label>.sock from its own process group
  p11kit_serve "$RUN/$1.sock" "$1" || exit 1
  pids+=("$p11kit_pid")
}
module_args=()
vault_env=()
manager_env=()
if [ "$ISOLATION" = 1 ]; then
  token_server vault
  token_server manager
  client="$(p11kit_client_module)" || { echo "run: p11-kit-client.so not found (install p11-kit-modules)" >&2; exit 1; }
  module_args=(--pkcs11-module "$client")
  vault_env=(env "P11_KIT_SERVER_ADDRESS=unix:path=$RUN/vault.sock")
  manager_env=(env "P11_KIT_SERVER_ADDRESS=unix:path=$RUN/manager.sock")
fi

# vault follows manager's JWKS URL (so signing-key rotation works); it becomes ready once
# manager is up and serving it.
"${vault_env[@]}" "$BIN/vault" --config "$CONF/vault.toml" "${module_args[@]}" \
  --manager-jwks https://127.0.0.1:8000/.well-known/jwks.json &
vault_pid=$!
pids+=($vault_pid)
wait_ready https://127.0.0.1:8001/healthz "$vault_pid"
"${manager_env[@]}" "$BIN/manager" --config "$CONF/manager.toml" "${module_args[@]}" &
manager_pid=$!
pids+=($manager_pid)
wait_ready https://127.0.0.1:8000/readyz "$manager_pid"
wait_ready https://127.0.0.1:8001/readyz "$vault_pid"
cat <<MSG

manager: https://127.0.0.1:8000   vault: https://127.0.0.1:8001 (internal mTLS :8002)
tokens: $TOKENS, $([ "$ISOLATION" = 1 ] && echo "in their own p11-kit server processes ($RUN/*.sock)" || echo "in process")
CA: $CA — try:
  curl --cacert .dev/tls/ca.pem -H 'content-type: application/json' \\
       -d '{"user_id":"alice","key_data":"s3cret"}' https://127.0.0.1:8000/api/keys
Ctrl-C stops both.
MSG
# Whichever exits first (or Ctrl-C) stops the other.
wait -n "${pids[@]}"
