#!/usr/bin/env bash
# PostgreSQL for vault: on the first start, a cluster in $PGDATA (its volume) with a database
# "vault" owned by a login role "vault". No TCP listener; the socket in /run/postgresql (a
# volume shared with the vault containers only) admits the role vault from the OS user vault
# (uid 10001, peer authentication) and the superuser from postgres, nothing else.
set -euo pipefail
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  initdb --pgdata "$PGDATA" --username postgres --encoding UTF8 --locale C.UTF-8 \
    --auth-local peer --auth-host reject >/dev/null
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
local vault    vault    peer
local all      postgres peer
HBA
  pg_ctl --pgdata "$PGDATA" --options "-c listen_addresses=''" --wait start >/dev/null
  psql --quiet --command 'CREATE ROLE vault LOGIN'
  psql --quiet --command 'CREATE DATABASE vault OWNER vault'
  pg_ctl --pgdata "$PGDATA" --wait stop >/dev/null
fi
exec postgres -c listen_addresses='' -c unix_socket_directories=/run/postgresql
