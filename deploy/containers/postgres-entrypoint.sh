#!/usr/bin/env bash
# PostgreSQL for vault. The first start makes a cluster in $PGDATA (its volume) with a database
# "vault" owned by a login role "vault", then marks it ($PGDATA/initialised); a first start
# stopped halfway is finished by the next (initdb again on an empty directory, the role and
# database made unless present). Meanwhile only a private socket in /tmp listens. Then: no TCP
# listener; the socket in /run/postgresql (a volume shared with the vault containers only)
# admits the role vault from the OS user vault (uid 10001, peer authentication) and the
# superuser from postgres, nothing else.
set -euo pipefail
if [ ! -e "$PGDATA/initialised" ]; then
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    rm -rf "${PGDATA:?}"/*
    initdb --pgdata "$PGDATA" --username postgres --encoding UTF8 --locale C.UTF-8 \
      --auth-local peer --auth-host reject >/dev/null
  fi
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
local vault    vault    peer
local all      postgres peer
HBA
  pg_ctl --pgdata "$PGDATA" --options "-c listen_addresses='' -c unix_socket_directories=/tmp" \
    --wait start >/dev/null
  sql() { psql --host /tmp --username postgres --quiet --tuples-only --no-align "$@"; }
  [ -n "$(sql --command "SELECT 1 FROM pg_roles WHERE rolname = 'vault'")" ] ||
    sql --command 'CREATE ROLE vault LOGIN'
  [ -n "$(sql --command "SELECT 1 FROM pg_database WHERE datname = 'vault'")" ] ||
    sql --command 'CREATE DATABASE vault OWNER vault'
  pg_ctl --pgdata "$PGDATA" --wait stop >/dev/null
  touch "$PGDATA/initialised"
fi
exec postgres -c listen_addresses='' -c unix_socket_directories=/run/postgresql
