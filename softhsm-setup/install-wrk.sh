#!/usr/bin/env bash
# Installs Debian's `wrk` (the HTTP load generator `make bench` drives the services with) when
# it is missing; does nothing when it is present. Idempotent; uses sudo when not root.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "install-wrk.sh: installing wrk (apt)" >&2
if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends wrk >/dev/null; then
  # A clean machine may have no package lists yet, or stale ones.
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi
command -v wrk >/dev/null 2>&1 || { echo "install-wrk.sh: wrk is still missing after apt-get install" >&2; exit 1; }
