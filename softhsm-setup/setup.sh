#!/usr/bin/env bash
# Provisions everything a local run needs under .dev/ (git-ignored), idempotently:
#   - installs softhsm2, opensc, openssl, curl, p11-kit (+ client module) and postgresql
#     (for the tests) when missing;
#   - .dev/softhsm2.conf with a private token directory;
#   - tokens "manager", "vault", "dev-ca" and "hsm-test" (for the hsm crate's tests) with random SO
#     and user PINs in 0600 files (the PINs are the only secrets .dev/ holds in the clear);
#   - manager's RS256 signing key, vault's RSA-OAEP wrapping key and vault's sign-only audit
#     key (it signs checkpoints of the audit chain), generated inside the tokens (sensitive,
#     non-extractable) by hsm-admin — each unless present, so tokens provisioned before a key
#     existed get it on the next run;
#   - the public halves exported as JWK (kid = RFC 7638 thumbprint) and PEM;
#   - a dev CA whose key lives in a token of its own ("dev-ca"), its certificate
#     (.dev/tls/ca.pem), and TLS keys generated inside the services' tokens — manager's
#     server and client keys, vault's public and internal server keys — with certificates
#     the CA issues from their public keys (ECDSA P-256; TLS_KEY_TYPE=rsa-2048 for RSA).
#     No private key is ever written to .dev/;
#   - .dev/manager.toml and .dev/vault.toml pointing at all of the above.
# Re-running it changes nothing that exists. Delete .dev/ to start over.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=p11-kit.sh
source "$ROOT/softhsm-setup/p11-kit.sh"
# shellcheck source=apt.sh
source "$ROOT/softhsm-setup/apt.sh"
DEV="$ROOT/.dev"
MODULE="${PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
SOFTHSM_MODULE="$MODULE"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
umask 077

log() { printf 'setup: %s\n' "$*" >&2; }

install_packages() {
  local missing=()
  [ -e "$MODULE" ] || missing+=(softhsm2)
  command -v pkcs11-tool >/dev/null || missing+=(opensc)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  # PostgreSQL binaries for the tests' private clusters (the tests start their own).
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
  # p11-kit server and p11-kit-client.so: tokens in their own process (isolation mode).
  command -v p11-kit >/dev/null || missing+=(p11-kit)
  p11kit_client_module >/dev/null || missing+=(p11-kit-modules)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
}

random_pin() { openssl rand -hex 16; }

write_once() { # path, command producing the content
  local path="$1"; shift
  [ -s "$path" ] && return
  "$@" >"$path.tmp"
  chmod 600 "$path.tmp"
  mv "$path.tmp" "$path"
}

softhsm_config() {
  mkdir -p "$DEV/tokens" "$DEV/pins" "$DEV/keys" "$DEV/tls" "$DEV/data"
  if [ ! -s "$DEV/softhsm2.conf" ]; then
    cat >"$DEV/softhsm2.conf" <<CONF
directories.tokendir = $DEV/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  fi
  export SOFTHSM2_CONF="$DEV/softhsm2.conf"
}

build_admin() {
  log "building hsm-admin"
  (cd "$ROOT" && cargo build --quiet -p hsm-admin --bin hsm-admin)
  ADMIN="$TARGET_DIR/debug/hsm-admin"
}

# Where the token being provisioned keeps its PINs, exported public keys, certificates and
# service configurations: .dev/ for SoftHSM2, .dev/kryoptic/ for Kryoptic (see kryoptic_tokens).
OUT="$DEV"

token_admin() { # token label, then hsm-admin arguments
  local token="$1"; shift
  "$ADMIN" --module "$MODULE" --token "$token" --pin-file "$OUT/pins/$token.pin" "$@"
}

# The dev CA's token is SoftHSM2's, whichever token holds the key being certified.
ca_admin() {
  "$ADMIN" --module "$SOFTHSM_MODULE" --token dev-ca --pin-file "$DEV/pins/dev-ca.pin" "$@"
}

provision_token() { # token label, key label, key id, usage, alg, use
  local token="$1" key="$2" id="$3" usage="$4" alg="$5" use="$6"
  write_once "$OUT/pins/$token.so.pin" random_pin
  write_once "$OUT/pins/$token.pin" random_pin
  token_admin "$token" init-token --so-pin-file "$OUT/pins/$token.so.pin"
  token_admin "$token" generate-rsa --label "$key" --id "$id" --usage "$usage"
  token_admin "$token" export-public --label "$key" --alg "$alg" --use "$use" \
    --jwk-out "$OUT/keys/$key.jwk.json" --pem-out "$OUT/keys/$key.pem"
  chmod 644 "$OUT/keys/$key.jwk.json" "$OUT/keys/$key.pem"
}

test_token() { # an empty token the hsm crate's tests create and destroy their keys in
  write_once "$OUT/pins/hsm-test.so.pin" random_pin
  write_once "$OUT/pins/hsm-test.pin" random_pin
  token_admin hsm-test init-token --so-pin-file "$OUT/pins/hsm-test.so.pin"
}

dev_ca() {
  local dir="$DEV/tls"
  mkdir -p "$dir"
  write_once "$DEV/pins/dev-ca.so.pin" random_pin
  write_once "$DEV/pins/dev-ca.pin" random_pin
  token_admin dev-ca init-token --so-pin-file "$DEV/pins/dev-ca.so.pin"
  if [ ! -s "$dir/ca.pem" ]; then
    # Certificates of an earlier CA would not chain to the new one: issue them again
    # (Kryoptic's TLS keys' too).
    find "$dir" -name '*.pem' -delete
    rm -f "$DEV"/kryoptic/tls/*.pem
    ca_admin generate-tls-key --label dev-ca --id 10 --type ecdsa-p256 --public-key-out "$dir/ca.pub.pem"
    ca_admin ca-certificate --label dev-ca --days 3650 --out "$dir/ca.pem"
  fi
}

tls_key() { # token, key label, key id, certificate name, purpose, subjectAltNames...
  local token="$1" label="$2" id="$3" name="$4" purpose="$5" dir="$OUT/tls"
  shift 5
  [ -s "$dir/$name.pem" ] && return
  token_admin "$token" generate-tls-key --label "$label" --id "$id" --type "${TLS_KEY_TYPE:-ecdsa-p256}" \
    --public-key-out "$dir/$name.pub.pem"
  local names=()
  for san in "$@"; do names+=(--name "$san"); done
  ca_admin issue-certificate --ca-label dev-ca --public-key "$dir/$name.pub.pem" \
    --common-name "$name" "${names[@]}" --purpose "$purpose" --days 825 --out "$dir/$name.pem"
}

tls_keys() {
  tls_key manager manager-tls 11 manager-server server localhost 127.0.0.1
  tls_key manager manager-client-tls 12 manager-client client manager.internal
  tls_key vault vault-tls 21 vault-server server localhost 127.0.0.1
  # manager accepts vault's internal certificate only for this name (vault_server_name);
  # a certificate issued before it carried the name is issued again.
  if [ -s "$OUT/tls/vault-internal.pem" ] &&
    ! openssl x509 -in "$OUT/tls/vault-internal.pem" -noout -ext subjectAltName 2>/dev/null | grep -q 'DNS:vault.internal'; then
    rm -f "$OUT/tls/vault-internal.pem"
  fi
  tls_key vault vault-internal-tls 22 vault-internal server vault.internal localhost 127.0.0.1
  chmod 644 "$OUT"/tls/*.pem
}

service_configs() {
  mkdir -p "$OUT/data"
  cat >"$OUT/vault.toml" <<CONF
# Generated by softhsm-setup/setup.sh for local runs; see config/vault.example.toml.
pkcs11_module = "$MODULE"
token_label = "vault"
pin_file = "$OUT/pins/vault.pin"
wrapping_key_label = "vault-wrapping"
audit_key_label = "vault-audit"
tls_cert = "$OUT/tls/vault-server.pem"
tls_key_label = "vault-tls"
internal_tls_cert = "$OUT/tls/vault-internal.pem"
internal_tls_key_label = "vault-internal-tls"
client_ca = "$DEV/tls/ca.pem"
manager_client_name = "manager.internal"
manager_jwks = "$OUT/keys/manager-signing.jwk.json"
database_url = "sqlite://$OUT/data/vault.db"
CONF
  cat >"$OUT/manager.toml" <<CONF
# Generated by softhsm-setup/setup.sh for local runs; see config/manager.example.toml.
pkcs11_module = "$MODULE"
token_label = "manager"
pin_file = "$OUT/pins/manager.pin"
signing_key_label = "manager-signing"
tls_cert = "$OUT/tls/manager-server.pem"
tls_key_label = "manager-tls"
vault_ca = "$DEV/tls/ca.pem"
client_cert = "$OUT/tls/manager-client.pem"
client_key_label = "manager-client-tls"
# vault's wrapping key is fetched from vault's internal API (vault_public_key unset).
CONF
}

# The same tokens, keys and configurations in Kryoptic, the second PKCS#11 implementation
# the tests run on (softhsm-setup/kryoptic.sh builds and caches it): .dev/kryoptic/ holds
# its configuration (KRYOPTIC_CONF), its token databases, a link to the module, and
# pins/, keys/, tls/ and manager.toml/vault.toml laid out as in .dev/. One slot per token;
# the dev CA stays in SoftHSM2 and certifies the TLS keys of both. The wrapping key is
# exported as RSA-OAEP-256: Kryoptic opens OAEP with SHA-256, SoftHSM2 2.6.1 does not.
kryoptic_tokens() (
  local dir="$DEV/kryoptic" module
  module="$(bash "$ROOT/softhsm-setup/kryoptic.sh" module)"
  mkdir -p "$dir/tokens" "$dir/pins" "$dir/keys" "$dir/tls" "$dir/data"
  ln -sfn "$module" "$dir/libkryoptic_pkcs11.so"
  if [ ! -s "$dir/kryoptic.conf" ]; then
    local slot=1 token
    for token in hsm-test manager vault; do
      printf '[[slots]]\nslot = %d\ndbtype = "sqlite"\ndbargs = "%s"\n\n' "$slot" "$dir/tokens/$token.sql"
      slot=$((slot + 1))
    done >"$dir/kryoptic.conf"
  fi
  export KRYOPTIC_CONF="$dir/kryoptic.conf"
  MODULE="$dir/libkryoptic_pkcs11.so"
  OUT="$dir"
  log "Kryoptic tokens in $dir"
  provision_token manager manager-signing 01 sign RS256 sig
  provision_token vault vault-wrapping 02 decrypt RSA-OAEP-256 enc
  provision_token vault vault-audit 03 sign RS256 sig
  test_token
  tls_keys
  service_configs
)

install_packages
softhsm_config
build_admin
provision_token manager manager-signing 01 sign RS256 sig
provision_token vault vault-wrapping 02 decrypt RSA-OAEP enc
provision_token vault vault-audit 03 sign RS256 sig
test_token
dev_ca
tls_keys
service_configs
kryoptic_tokens
log "ready: $DEV (SOFTHSM2_CONF=$DEV/softhsm2.conf; Kryoptic: KRYOPTIC_CONF=$DEV/kryoptic/kryoptic.conf)"
