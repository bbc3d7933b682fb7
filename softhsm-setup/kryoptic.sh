#!/usr/bin/env bash
# Kryoptic (https://github.com/latchset/kryoptic), the second PKCS#11 implementation the tests run
# on: a soft token in Rust over OpenSSL, keeping its objects in SQLite. Built from the crate
# published on crates.io and cached outside git; never a committed binary.
#   kryoptic.sh module     builds it unless cached (installs its build dependencies when missing)
#                          and prints the path of libkryoptic_pkcs11.so
# The cache is $KRYOPTIC_CACHE (default ~/.cache/secret-store/kryoptic-VERSION); CI may cache
# that folder across runs. Debian 12's OpenSSL is 3.0 and Kryoptic's default features need
# 3.2, hence `minimal` with `kryoptic-lib/dynamic` (which must be named, or `minimal` tries to
# link a static OpenSSL). `minimal` has RSA (PKCS#1, PSS, OAEP), ECDSA, AES and SHA-2, which is
# everything the services ask of a token.
set -euo pipefail
# shellcheck source=apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

KRYOPTIC_VERSION="1.5.4"
# sha256 of the .crate file crates.io serves (its index records the same checksum).
KRYOPTIC_SHA256="21b64b7679ce821f19a7a48b7e40146f26fbb9daa64ee2acb6376788a26d7ae8"
CACHE="${KRYOPTIC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/secret-store/kryoptic-$KRYOPTIC_VERSION}"
MODULE="$CACHE/libkryoptic_pkcs11.so"

log() { printf 'kryoptic: %s\n' "$*" >&2; }

install_build_packages() {
  local missing=() pkg
  for pkg in libclang-dev libssl-dev pkg-config libsqlite3-dev curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
}

build() {
  install_build_packages
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  log "building Kryoptic $KRYOPTIC_VERSION from crates.io (a few minutes, once; cached in $CACHE)"
  curl -sSfL --retry 3 -o "$work/kryoptic.crate" \
    "https://static.crates.io/crates/kryoptic/kryoptic-$KRYOPTIC_VERSION.crate"
  echo "$KRYOPTIC_SHA256  $work/kryoptic.crate" | sha256sum --check --quiet
  tar -xzf "$work/kryoptic.crate" -C "$work"
  # The crate's own Cargo.lock pins its dependencies; its own target dir keeps the project's
  # target/ free of Kryoptic's build.
  (cd "$work/kryoptic-$KRYOPTIC_VERSION" &&
    CARGO_TARGET_DIR="$work/target" cargo build --quiet --release --locked \
      --no-default-features --features "minimal kryoptic-lib/dynamic")
  mkdir -p "$CACHE"
  install -m 0755 "$work/target/release/libkryoptic_pkcs11.so" "$MODULE.tmp"
  mv "$MODULE.tmp" "$MODULE"
}

case "${1:-module}" in
  module)
    [ -s "$MODULE" ] || build
    echo "$MODULE"
    ;;
  *)
    echo "usage: $0 module" >&2
    exit 2
    ;;
esac
