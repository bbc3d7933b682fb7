#!/usr/bin/env bash
# Installs Debian's `wrk` (the HTTP load generator `make bench` drives the services with) when
# it is missing; does nothing when it is present. Idempotent; uses sudo when not root.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
# shellcheck source=apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
echo "install-wrk.sh: installing wrk (apt)" >&2
apt_install wrk
command -v wrk >/dev/null 2>&1 || { echo "install-wrk.sh: wrk is still missing after apt-get install" >&2; exit 1; }
