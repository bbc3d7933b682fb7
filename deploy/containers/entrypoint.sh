#!/usr/bin/env bash
# The image's entry point, one role per container (compose.yaml):
#
#   token-server  runs as `token`. On its first start it provisions, with hsm-admin, the
#                 SoftHSM2 tokens "manager", "vault" and "dev-ca" in its own volume
#                 (/var/lib/secret-store-token: token files and every PIN, 0700): the services'
#                 keys and TLS keys generated inside the tokens, certificates from the dev CA.
#                 On every start it hands each service what that service needs, in the
#                 service's own volume (/run/secret-store/<service>/: its user PIN, its
#                 certificates, the CA certificate), copies the CA certificate to
#                 /var/lib/secret-store-ca/ca.pem (the volume users copy it from), and serves
#                 each token with its own `p11-kit server` on /run/secret-store/<service>/token.sock.
#   manager       runs as `secret-store` with its service's volume on /run/secret-store/token:
#   vault         waits for the token server's socket and PIN there, copies the PIN to a
#                 0600 file in /dev/shm (the services refuse a PIN file they do not own), and
#                 execs the service on /etc/secret-store/<service>.toml, through p11-kit-client.so
#                 (P11_KIT_SERVER_ADDRESS and <SERVICE>_CONFIG are set in the image).
#
# Anything else is run as a command (e.g. `hsm-admin --help`).
set -euo pipefail
umask 077

TOKENS=/var/lib/secret-store-token
CA_OUT=/var/lib/secret-store-ca
SHARED=/run/secret-store
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so
export SOFTHSM2_CONF="$TOKENS/softhsm2.conf"

log() { printf '%s: %s\n' "${ROLE:-entrypoint}" "$*" >&2; }
die() { log "$*"; exit 1; }

random_pin() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

write_once() { # path: a random PIN unless present
  [ -s "$1" ] && return
  random_pin >"$1.tmp"
  mv "$1.tmp" "$1"
}

admin() { # token label, then hsm-admin arguments
  local token="$1"; shift
  hsm-admin --module "$SOFTHSM" --token "$token" --pin-file "$TOKENS/pins/$token.pin" "$@"
}

token() { # token label: a token with random SO and user PINs (hsm-admin skips what exists)
  write_once "$TOKENS/pins/$1.so.pin"
  write_once "$TOKENS/pins/$1.pin"
  admin "$1" init-token --so-pin-file "$TOKENS/pins/$1.so.pin"
}

key() { # token, key label, key id, usage
  admin "$1" generate-rsa --label "$2" --id "$3" --usage "$4"
}

tls_key() { # token, key label, key id, certificate name, purpose, subjectAltNames...
  local token="$1" label="$2" id="$3" name="$4" purpose="$5" names=()
  shift 5
  [ -s "$TOKENS/tls/$name.pem" ] && return
  admin "$token" generate-tls-key --label "$label" --id "$id" --type ecdsa-p256 \
    --public-key-out "$TOKENS/tls/$name.pub.pem"
  for san in "$@"; do names+=(--name "$san"); done
  admin dev-ca issue-certificate --ca-label dev-ca --public-key "$TOKENS/tls/$name.pub.pem" \
    --common-name "$name" "${names[@]}" --purpose "$purpose" --days 825 --out "$TOKENS/tls/$name.pem.tmp"
  mv "$TOKENS/tls/$name.pem.tmp" "$TOKENS/tls/$name.pem"
}

# Idempotent: a start interrupted halfway finishes on the next one.
provision() {
  mkdir -p "$TOKENS/softhsm" "$TOKENS/pins" "$TOKENS/tls"
  [ -s "$SOFTHSM2_CONF" ] || cat >"$SOFTHSM2_CONF" <<CONF
directories.tokendir = $TOKENS/softhsm
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
  [ -e "$TOKENS/provisioned" ] && return
  log "first start: provisioning the tokens in $TOKENS"
  token manager
  key manager manager-signing 01 sign
  token vault
  key vault vault-wrapping 02 decrypt
  key vault vault-audit 03 sign
  token dev-ca
  if [ ! -s "$TOKENS/tls/ca.pem" ]; then
    rm -f "$TOKENS"/tls/*.pem
    admin dev-ca generate-tls-key --label dev-ca --id 10 --type ecdsa-p256 --public-key-out "$TOKENS/tls/ca.pub.pem"
    admin dev-ca ca-certificate --label dev-ca --days 3650 --out "$TOKENS/tls/ca.pem.tmp"
    mv "$TOKENS/tls/ca.pem.tmp" "$TOKENS/tls/ca.pem"
  fi
  # Host names: the Compose service names the other containers use, and localhost /
  # 127.0.0.1 for the ports published on the host.
  tls_key manager manager-tls 11 manager-server server manager localhost 127.0.0.1
  tls_key manager manager-client-tls 12 manager-client client manager.internal
  tls_key vault vault-tls 21 vault-server server vault-1 vault-2 localhost 127.0.0.1
  tls_key vault vault-internal-tls 22 vault-internal server vault.internal
  touch "$TOKENS/provisioned"
  log "provisioned"
}

hand_over() { # service, its certificates...: its PIN and certificates into its own volume
  local service="$1" dir="$SHARED/$1" file
  shift
  for file in "$@" ca; do
    install -m 0644 "$TOKENS/tls/$file.pem" "$dir/$file.pem"
  done
  # Readable by the service's group (the PIN file the service reads is its own copy).
  install -m 0640 -g secret-store "$TOKENS/pins/$service.pin" "$dir/pin"
}

serve() { # token label: p11-kit server on its service's socket, in the background
  local socket="$SHARED/$1/token.sock"
  rm -f "$socket"
  # -u: p11-kit drops a peer whose uid is not the services' user (SO_PEERCRED).
  p11-kit server -f -n "$socket" -u secret-store --provider "$SOFTHSM" "pkcs11:token=$1" &
  servers+=($!)
  local n=0
  until [ -S "$socket" ]; do
    n=$((n + 1))
    [ $n -le 300 ] || die "p11-kit server for token $1 did not create $socket"
    sleep 0.1
  done
  # p11-kit binds the socket 0711 under our umask; who may connect is decided by the
  # directory (0750, group secret-store) and by -u.
  chmod 0666 "$socket"
}

token_server() {
  provision
  hand_over manager manager-server manager-client
  hand_over vault vault-server vault-internal
  install -m 0644 "$TOKENS/tls/ca.pem" "$CA_OUT/ca.pem"
  servers=()
  trap 'kill "${servers[@]}" 2>/dev/null; wait; exit 0' TERM INT
  serve manager
  serve vault
  log "serving tokens manager and vault"
  # Either server ending ends the container (its restart policy brings both back).
  wait -n
  kill "${servers[@]}" 2>/dev/null || true
  die "a p11-kit server exited"
}

service() { # manager | vault
  local dir="$SHARED/token" n=0
  until [ -S "$dir/token.sock" ] && [ -s "$dir/pin" ]; do
    n=$((n + 1))
    [ $n -le 600 ] || die "no token server: $dir/token.sock and $dir/pin did not appear within 60 s"
    sleep 0.1
  done
  install -m 0600 "$dir/pin" "/dev/shm/$1.pin"
  # The image's environment names the socket and the configuration (Containerfile).
  exec "$1"
}

ROLE="${1:-}"
case "$ROLE" in
  token-server) token_server ;;
  manager | vault) service "$ROLE" ;;
  --help | -h | "")
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    ;;
  *) exec "$@" ;;
esac
