#!/usr/bin/env bash
# Installs schemathesis 4 (PyPI) into a private virtual environment, once, and prints the
# path of its `schemathesis` executable. Idempotent: an existing venv with schemathesis 4 is
# reused. Needs python3 with the venv module (Debian: python3-venv, installed when missing).
#   SCHEMATHESIS_VENV  where the venv lives (default ~/.cache/secret-store/schemathesis-venv)
set -euo pipefail

VENV="${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/secret-store/schemathesis-venv}"
BIN="$VENV/bin/schemathesis"

log() { printf 'schemathesis.sh: %s\n' "$*" >&2; }

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q 'version 4\.'; then
  printf '%s\n' "$BIN"
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  log "installing python3-venv"
  sudo apt-get install -y python3-venv >&2
fi

log "creating $VENV"
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4,<5' >&2
"$BIN" --version >&2
printf '%s\n' "$BIN"
