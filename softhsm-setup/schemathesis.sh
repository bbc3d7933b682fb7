#!/usr/bin/env bash
# Installs schemathesis 4 (PyPI) into a private virtual environment, once, and prints the
# path of its `schemathesis` executable. Idempotent: an existing venv with schemathesis 4 is
# reused. Needs python3 with the venv module (Debian: python3-venv, installed when missing).
#   SCHEMATHESIS_VENV  where the venv lives (default ~/.cache/secret-store/schemathesis-venv)
set -euo pipefail
# shellcheck source=apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/secret-store/schemathesis-venv}"
BIN="$VENV/bin/schemathesis"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

# Pinned: a new release may add checks or change flags, which would change what the test
# asserts without a change here.
VERSION="4.32.5"

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qF "version $VERSION"; then
  printf '%s\n' "$BIN"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  log "installing python3-venv"
  apt_install python3-venv
fi

log "creating $VENV"
mkdir -p "$(dirname "$VENV")"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
"$BIN" --version >&2
printf '%s\n' "$BIN"
