#!/usr/bin/env bash
# Provisions everything a local run needs under .dev/ (git-ignored), idempotently:
#   - installs softhsm2, opensc, openssl, curl, p11-kit (+ client module) and postgresql
#     (for the tests) when missing;
#   - .dev/softhsm2.conf with a private token directory;
#   - tokens "manager", "vault" and "hsm-test" (for the hsm crate's tests) with random SO and user PINs in 0600 files;
#   - manager's RS256 signing key and vault's RSA-OAEP wrapping key, generated inside
#     the tokens (sensitive, non-extractable) by hsm-admin;
#   - the public halves exported as JWK (kid = RFC 7638 thumbprint) and PEM;
#   - a dev CA (.dev/tls/ca.pem) and TLS certificates for manager, vault and manager's
#     client certificate for vault's internal listener;
#   - .dev/manager.toml and .dev/vault.toml pointing at all of the above.
# Re-running it changes nothing that exists. Delete .dev/ to start over.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="$ROOT/.dev"
MODULE="${PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
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
  [ -e /usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so ] || missing+=(p11-kit-modules)
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  log "installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
  (cd "$ROOT" && cargo build --quiet -p hsm --bin hsm-admin)
  ADMIN="$TARGET_DIR/debug/hsm-admin"
}

provision_token() { # token label, key label, key id, usage, alg, use
  local token="$1" key="$2" id="$3" usage="$4" alg="$5" use="$6"
  write_once "$DEV/pins/$token.so.pin" random_pin
  write_once "$DEV/pins/$token.pin" random_pin
  local admin=("$ADMIN" --module "$MODULE" --token "$token" --pin-file "$DEV/pins/$token.pin")
  "${admin[@]}" init-token --so-pin-file "$DEV/pins/$token.so.pin"
  "${admin[@]}" generate-rsa --label "$key" --id "$id" --usage "$usage"
  "${admin[@]}" export-public --label "$key" --alg "$alg" --use "$use" \
    --jwk-out "$DEV/keys/$key.jwk.json" --pem-out "$DEV/keys/$key.pem"
  chmod 644 "$DEV/keys/$key.jwk.json" "$DEV/keys/$key.pem"
}

issue_cert() { # name, extended key usage, subjectAltName
  local name="$1" eku="$2" san="$3" dir="$DEV/tls"
  [ -s "$dir/$name.pem" ] && return
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$name.key" 2>/dev/null
  openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$eku" "$san" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
    -days 825 -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  chmod 600 "$dir/$name.key"
  chmod 644 "$dir/$name.pem"
}

test_token() { # an empty token the hsm crate's tests create and destroy their keys in
  write_once "$DEV/pins/hsm-test.so.pin" random_pin
  write_once "$DEV/pins/hsm-test.pin" random_pin
  "$ADMIN" --module "$MODULE" --token hsm-test --pin-file "$DEV/pins/hsm-test.pin" \
    init-token --so-pin-file "$DEV/pins/hsm-test.so.pin"
}

dev_ca() {
  local dir="$DEV/tls"
  if [ ! -s "$dir/ca.pem" ]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=secret-store dev CA" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.pem"
    chmod 644 "$dir/ca.pem"
  fi
  issue_cert manager-server serverAuth "DNS:localhost,IP:127.0.0.1"
  issue_cert vault-server serverAuth "DNS:localhost,IP:127.0.0.1"
  issue_cert manager-client clientAuth "DNS:manager.internal"
}

service_configs() {
  cat >"$DEV/vault.toml" <<CONF
# Generated by softhsm-setup/setup.sh for local runs; see config/vault.example.toml.
pkcs11_module = "$MODULE"
token_label = "vault"
pin_file = "$DEV/pins/vault.pin"
wrapping_key_label = "vault-wrapping"
tls_cert = "$DEV/tls/vault-server.pem"
tls_key = "$DEV/tls/vault-server.key"
client_ca = "$DEV/tls/ca.pem"
manager_client_name = "manager.internal"
manager_jwks = "$DEV/keys/manager-signing.jwk.json"
database_url = "sqlite://$DEV/data/vault.db"
CONF
  cat >"$DEV/manager.toml" <<CONF
# Generated by softhsm-setup/setup.sh for local runs; see config/manager.example.toml.
pkcs11_module = "$MODULE"
token_label = "manager"
pin_file = "$DEV/pins/manager.pin"
signing_key_label = "manager-signing"
tls_cert = "$DEV/tls/manager-server.pem"
tls_key = "$DEV/tls/manager-server.key"
vault_ca = "$DEV/tls/ca.pem"
client_cert = "$DEV/tls/manager-client.pem"
client_key = "$DEV/tls/manager-client.key"
# vault's wrapping key is fetched from vault's internal API (vault_public_key unset).
CONF
}

install_packages
softhsm_config
build_admin
provision_token manager manager-signing 01 sign RS256 sig
provision_token vault vault-wrapping 02 decrypt RSA-OAEP enc
test_token
dev_ca
service_configs
rm -f "$DEV/tls/ca.srl"
log "ready: $DEV (SOFTHSM2_CONF=$DEV/softhsm2.conf)"
