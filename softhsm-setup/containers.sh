#!/usr/bin/env bash
# The container images of deploy/containers/, built here with podman and no registry:
#
#   bash softhsm-setup/containers.sh images    installs podman & co. when missing, makes the
#                                              base image, builds both images (--pull=never)
#                                              as SECRET_STORE_IMAGE / SECRET_STORE_POSTGRES_IMAGE
#   bash softhsm-setup/containers.sh env       prints the CONTAINERS_CONF to export
#
# The base image `debian:bookworm-slim` is not pulled: debootstrap makes a minimal bookworm
# from this machine's Debian mirror (its apt sources), cached as a tarball in
# ~/.cache/secret-store/containers/ (outside git), and `podman import` names it so that
# `FROM debian:bookworm-slim` resolves locally. A user with a registry builds the same
# Containerfiles on the real image (deploy/containers/README.md).
#
# Sandbox-only settings live in softhsm-setup/containers.conf (CONTAINERS_CONF, unless the
# caller set one): runc instead of crun, fixed ulimits, CNI. They are not needed on a
# normal host and are not in the Containerfiles.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=apt.sh
source "$ROOT/softhsm-setup/apt.sh"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/secret-store/containers"
BASE=docker.io/library/debian:bookworm-slim
# The tags compose.yaml runs (its defaults are the :dev tags a user builds; the test's are its own).
IMAGE="${SECRET_STORE_IMAGE:-localhost/secret-store:dev}"
DB_IMAGE="${SECRET_STORE_POSTGRES_IMAGE:-localhost/secret-store-postgres:dev}"
BINARIES=(manager manager-admin vault vault-admin hsm-admin secret-store)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$ROOT/softhsm-setup/containers.conf}"

log() { printf 'containers: %s\n' "$*" >&2; }

install_packages() {
  local missing=() tool
  for tool in podman podman-compose runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  # CNI's dnsname plugin: container names resolve on a Compose network (containers.conf).
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  [ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
  # debootstrap checks bookworm's signatures (already there on Debian, not on Ubuntu).
  [ -s /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
}

# The first Debian mirror of this machine's apt sources (deb822 or one-line format).
mirror() {
  local found
  found="$(sed -n 's/^URIs: *\([^ ]*\/debian\/\{0,1\}\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
  [ -n "$found" ] || found="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)"
  echo "${found:-http://deb.debian.org/debian}"
}

base_image() {
  podman image exists "$BASE" && return
  local tarball="$CACHE/debian-bookworm-minbase.tar"
  if [ ! -s "$tarball" ]; then
    local rootfs
    rootfs="$(mktemp -d)"
    log "debootstrap bookworm from $(mirror) (cached in $tarball)"
    debootstrap --variant=minbase bookworm "$rootfs" "$(mirror)" >/dev/null
    # What the slim image leaves out: downloaded packages and package lists.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$CACHE"
    tar -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$rootfs"
  fi
  podman import "$tarball" "$BASE" >/dev/null
}

build() { # Containerfile, tag: the image the tag named before is removed unless in use
  local before
  before="$(podman image inspect --format '{{.Id}}' "$2" 2>/dev/null || true)"
  podman build --pull=never --quiet -f "$1" -t "$2" . >/dev/null
  if [ -n "$before" ] && [ "$before" != "$(podman image inspect --format '{{.Id}}' "$2")" ]; then
    podman rmi "$before" >/dev/null 2>&1 || true
  fi
}

images() {
  install_packages
  base_image
  local name
  for name in "${BINARIES[@]}"; do
    [ -x "$ROOT/target/release/$name" ] || {
      log "target/release/$name is missing: run \`make release\` first"
      exit 1
    }
  done
  cd "$ROOT"
  build deploy/containers/Containerfile "$IMAGE"
  build deploy/containers/postgres.Containerfile "$DB_IMAGE"
  log "built $IMAGE and $DB_IMAGE"
}

case "${1:-}" in
  images) images ;;
  env) echo "CONTAINERS_CONF=$CONTAINERS_CONF" ;;
  *)
    echo "usage: $0 images | env" >&2
    exit 2
    ;;
esac
