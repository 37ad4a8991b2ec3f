#!/bin/sh
# What the official postgres image's entrypoint does, as far as the chart uses it: on the first
# start, initdb in $PGDATA with the superuser $POSTGRES_USER (password $POSTGRES_PASSWORD:
# scram-sha-256 over TCP from anywhere, trust on the local socket) and the database
# $POSTGRES_DB; then postgres, listening on all addresses. Works on a read-only root filesystem.
set -eu
case "${1:-}" in "" | -*) set -- postgres "$@" ;; esac
[ "$1" = postgres ] || exec "$@"
PGDATA=${PGDATA:-/var/lib/postgresql/data}
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ "$(id -u)" = 0 ]; then   # as root: hand the directories to postgres and drop to it
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
mkdir -p "$PGDATA"
chmod 700 "$PGDATA" 2>/dev/null || true
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgresql: the database is not initialised and POSTGRES_PASSWORD is not set" >&2; exit 1
  fi
  echo "postgresql: initdb in $PGDATA (superuser $user, database $db)"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options, as in the official image
  printf '%s\n' "$POSTGRES_PASSWORD" | initdb -D "$PGDATA" --username="$user" --pwfile=/dev/stdin \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-} >/dev/null
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE \"$db\";" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "postgresql: initialised"
fi
exec "$@"
