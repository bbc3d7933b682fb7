#!/usr/bin/env bash
# Token operation rates, SoftHSM loaded in process and then through `p11-kit server`
# (isolation mode), next to `openssl speed` on the same machine in the same run, so the
# figures can be read as ratios. Keys: ECDSA P-256 and RSA-2048 in the hsm-test token.
# `make bench` (loadgen) measures the RSA-2048 two-thread figures itself; this script is the
# wider table (ECDSA too, one thread too).
# Usage: bench-tokens.sh [seconds per figure, default 5] [cargo profile: release (default when
# built) or debug]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=p11-kit.sh
source "$ROOT/softhsm-setup/p11-kit.sh"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
PROFILE="${2:-}"
if [ -z "$PROFILE" ]; then
  PROFILE=release
  [ -x "$TARGET/release/hsm-admin" ] || PROFILE=debug
fi
ADMIN="$TARGET/$PROFILE/hsm-admin"
[ -x "$ADMIN" ] || { echo "bench-tokens.sh: $ADMIN is missing (make release, or make build for debug)" >&2; exit 1; }
echo "-- hsm-admin: $ADMIN --"
export SOFTHSM2_CONF="$ROOT/.dev/softhsm2.conf"
SECONDS_EACH="${1:-5}"
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
RUN="$(mktemp -d)"
server=""
cleanup() { [ -n "$server" ] && kill -- "-$server" 2>/dev/null; rm -rf "$RUN"; }
trap cleanup EXIT

admin() { # module, then hsm-admin arguments
  local module="$1"; shift
  "$ADMIN" --module "$module" --token hsm-test --pin-file "$ROOT/.dev/pins/hsm-test.pin" "$@"
}

admin "$SOFTHSM" generate-tls-key --label bench-ecdsa --id b1 --type ecdsa-p256 --public-key-out "$RUN/ec.pem" >/dev/null
admin "$SOFTHSM" generate-tls-key --label bench-rsa --id b2 --type rsa-2048 --public-key-out "$RUN/rsa.pem" >/dev/null

echo "-- openssl speed (software keys in process; sign/s) --"
for procs in 1 2; do
  openssl speed -multi "$procs" -seconds "$SECONDS_EACH" rsa2048 ecdsap256 2>/dev/null | awk -v p="$procs" '
    /^rsa 2048 bits/ {print "openssl rsa2048 sign/s, " p " process(es): " $6}
    /^ *256 bits ecdsa \(nistp256\)/ {print "openssl ecdsap256 sign/s, " p " process(es): " $7}'
done

echo "-- SoftHSM2 in process (hsm-admin bench) --"
for label in bench-ecdsa bench-rsa; do
  for threads in 1 2; do
    admin "$SOFTHSM" bench --label "$label" --seconds "$SECONDS_EACH" --concurrency "$threads"
  done
done

echo "-- through p11-kit server (isolation mode) --"
CLIENT="$(p11kit_client_module)" || { echo "bench: p11-kit-client.so not found (install p11-kit-modules)" >&2; exit 1; }
PKCS11_PROVIDER="$SOFTHSM" p11kit_serve "$RUN/hsm-test.sock" hsm-test
server="$p11kit_pid"
export P11_KIT_SERVER_ADDRESS="unix:path=$RUN/hsm-test.sock"
for label in bench-ecdsa bench-rsa; do
  for threads in 1 2; do
    admin "$CLIENT" bench --label "$label" --seconds "$SECONDS_EACH" --concurrency "$threads"
  done
done
