#!/usr/bin/env bash
# The image's entry point, one role per container (compose.yaml):
#
#   provision       runs as `token`, once per `up` (then exits). The first time, it makes the
#                   SoftHSM2 tokens "manager", "vault" and "dev-ca" with hsm-admin, each in
#                   its own volume (/var/lib/secret-store-token/<token>: token files, user and
#                   SO PIN; 0700): the services' keys and TLS keys generated inside the
#                   tokens, their certificates issued by the dev CA, whose key stays in the
#                   dev-ca token. Every time, it hands each service what that service needs in
#                   the service's own volume (/run/secret-store/<service>: its user PIN, its
#                   certificates, the CA certificate), then marks each token provisioned.
#                   It alone ever holds all three tokens, as an operator's provisioning does.
#   token-server T  runs as `token` with token T's volume and T's service volume only: serves
#                   T with `p11-kit server` on /run/secret-store/T/token.sock once provision
#                   has marked it, and writes /run/secret-store/T/ready when the socket opens.
#   manager, vault  run as `secret-store` with the service's volume on /run/secret-store/token:
#                   wait for the token server's `ready` and the PIN there, copy the PIN to a
#                   0600 file in /dev/shm (the services refuse a PIN file they do not own), and
#                   exec the service on /etc/secret-store/<service>.toml through p11-kit-client.so
#                   (P11_KIT_SERVER_ADDRESS and <SERVICE>_CONFIG are set in the image).
#
# Anything else is run as a command (e.g. `hsm-admin --help`).
set -euo pipefail
umask 077

TOKENS=/var/lib/secret-store-token
SHARED=/run/secret-store
SOFTHSM=/usr/lib/softhsm/libsofthsm2.so

log() { printf '%s: %s\n' "${ROLE:-entrypoint}" "$*" >&2; }
die() { log "$*"; exit 1; }

# A stop (SIGTERM) while provisioning takes effect between steps, never inside hsm-admin.
stopping=0
trap 'stopping=1' TERM INT
step() {
  [ "$stopping" = 0 ] || die "stopped; provisioning resumes at the next start"
  "$@"
}

random_pin() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

write_once() { # path: a random PIN unless present
  [ -s "$1" ] && return
  random_pin >"$1.tmp"
  mv "$1.tmp" "$1"
}

admin() { # token label, then hsm-admin arguments, on that token's own SoftHSM2 configuration
  local token="$1"; shift
  SOFTHSM2_CONF="$TOKENS/$token/softhsm2.conf" \
    hsm-admin --module "$SOFTHSM" --token "$token" --pin-file "$TOKENS/$token/pins/$token.pin" "$@"
}

token() { # label: a token with random SO and user PINs in its own volume (skips what exists)
  local dir="$TOKENS/$1"
  mkdir -p "$dir/softhsm" "$dir/pins" "$dir/tls"
  if [ ! -s "$dir/softhsm2.conf" ]; then
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
      "$dir/softhsm" >"$dir/softhsm2.conf.tmp"
    mv "$dir/softhsm2.conf.tmp" "$dir/softhsm2.conf"
  fi
  write_once "$dir/pins/$1.so.pin"
  write_once "$dir/pins/$1.pin"
  step admin "$1" init-token --so-pin-file "$dir/pins/$1.so.pin"
}

tls_key() { # token, key label, key id, certificate name, purpose, subjectAltNames...
  local token="$1" label="$2" id="$3" name="$4" purpose="$5" names=() dir="$TOKENS/$1/tls"
  shift 5
  [ -s "$dir/$name.pem" ] && return
  step admin "$token" generate-tls-key --label "$label" --id "$id" --type ecdsa-p256 \
    --public-key-out "$dir/$name.pub.pem"
  for san in "$@"; do names+=(--name "$san"); done
  step admin dev-ca issue-certificate --ca-label dev-ca --public-key "$dir/$name.pub.pem" \
    --common-name "$name" "${names[@]}" --purpose "$purpose" --days 825 --out "$dir/$name.pem.tmp"
  mv "$dir/$name.pem.tmp" "$dir/$name.pem"
}

# Idempotent: a first start stopped or killed halfway finishes on the next one (hsm-admin
# skips the tokens and keys that exist and completes a token left without its user PIN).
provision_tokens() {
  token dev-ca
  local ca="$TOKENS/dev-ca/tls/ca.pem"
  if [ ! -s "$ca" ]; then
    step admin dev-ca generate-tls-key --label dev-ca --id 10 --type ecdsa-p256 \
      --public-key-out "$TOKENS/dev-ca/tls/ca.pub.pem"
    step admin dev-ca ca-certificate --label dev-ca --days 3650 --out "$ca.tmp"
    mv "$ca.tmp" "$ca"
  fi
  token manager
  step admin manager generate-rsa --label manager-signing --id 01 --usage sign
  # Host names: the Compose service names other containers use, and localhost / 127.0.0.1
  # for the ports published on the host.
  tls_key manager manager-tls 11 manager-server server manager localhost 127.0.0.1
  tls_key manager manager-client-tls 12 manager-client client manager.internal
  token vault
  step admin vault generate-rsa --label vault-wrapping --id 02 --usage decrypt
  step admin vault generate-rsa --label vault-audit --id 03 --usage sign
  tls_key vault vault-tls 21 vault-server server vault-1 vault-2 localhost 127.0.0.1
  tls_key vault vault-internal-tls 22 vault-internal server vault.internal
}

hand_over() { # token (= service), its certificates...: into the service's own volume
  local token="$1" dir="$SHARED/$1" file
  shift
  for file in "$@"; do
    install -m 0644 "$TOKENS/$token/tls/$file.pem" "$dir/$file.pem"
  done
  install -m 0644 "$TOKENS/dev-ca/tls/ca.pem" "$dir/ca.pem"
  # Readable by the services' group; the PIN file the service reads is its own copy.
  install -m 0640 -g secret-store "$TOKENS/$token/pins/$token.pin" "$dir/pin"
  touch "$TOKENS/$token/provisioned"
}

provision() {
  [ -e "$TOKENS/manager/provisioned" ] && [ -e "$TOKENS/vault/provisioned" ] ||
    log "provisioning the tokens (first start)"
  provision_tokens
  hand_over manager manager-server manager-client
  hand_over vault vault-server vault-internal
  log "tokens provisioned, services' PINs and certificates handed over"
}

token_server() { # token label
  local token="$1" dir="$SHARED/$1" n=0 server
  case "$token" in manager | vault) ;; *) die "token-server serves manager or vault, not ${token:-nothing}" ;; esac
  rm -f "$dir/ready" "$dir/token.sock"
  until [ -e "$TOKENS/$token/provisioned" ]; do
    [ "$stopping" = 0 ] || exit 0
    n=$((n + 1))
    [ $n -le 3000 ] || die "token $token was not provisioned within 300 s (the provision container's log says why)"
    sleep 0.1
  done
  export SOFTHSM2_CONF="$TOKENS/$token/softhsm2.conf"
  # -u: p11-kit drops a peer whose uid is not the services' user (SO_PEERCRED).
  p11-kit server -f -n "$dir/token.sock" -u secret-store --provider "$SOFTHSM" "pkcs11:token=$token" &
  server=$!
  trap 'kill "$server" 2>/dev/null || true; wait "$server" || true; exit 0' TERM INT
  [ "$stopping" = 0 ] || { kill "$server"; exit 0; }
  n=0
  until [ -S "$dir/token.sock" ]; do
    n=$((n + 1))
    [ $n -le 300 ] || die "p11-kit server did not create $dir/token.sock within 30 s"
    sleep 0.1
  done
  # p11-kit binds the socket 0711 under our umask: who may connect is decided by the
  # directory (0750, group secret-store) and by -u. Ready only once it is open.
  chmod 0666 "$dir/token.sock"
  touch "$dir/ready"
  log "serving token $token"
  wait "$server" || true
  rm -f "$dir/ready"
  die "the p11-kit server exited"
}

service() { # manager | vault
  local dir="$SHARED/token" n=0
  until [ -e "$dir/ready" ] && [ -s "$dir/pin" ]; do
    n=$((n + 1))
    [ $n -le 3000 ] || die "no token server: $dir/ready and $dir/pin did not appear within 300 s"
    sleep 0.1
  done
  install -m 0600 "$dir/pin" "/dev/shm/$1.pin"
  # The image's environment names the socket and the configuration (Containerfile).
  exec "$1"
}

ROLE="${1:-}"
case "$ROLE" in
  provision) provision ;;
  token-server) token_server "${2:-}" ;;
  manager | vault) service "$ROLE" ;;
  --help | -h | "")
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    ;;
  *) exec "$@" ;;
esac
