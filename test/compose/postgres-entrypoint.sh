#!/bin/sh
# Entry point of the test's PostgreSQL image (Debian's postgresql-15), doing what the official
# postgres image's does for the variables the Compose file uses: on an empty PGDATA it runs initdb
# with POSTGRES_USER / POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), creates POSTGRES_DB and
# listens on every address with password authentication; then it runs the server as PID 1 as the
# postgres user.
set -eu
PGBIN=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

# POSTGRES_PASSWORD_FILE (a Compose secret) read as the official image reads it: as root, before
# privileges are dropped (the file may be root's only), trailing newlines dropped.
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set (but are exclusive)" >&2
    exit 1
  fi
  POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  export POSTGRES_PASSWORD
  unset POSTGRES_PASSWORD_FILE
fi

if [ "$(id -u)" = 0 ]; then
  # A fresh named volume belongs to root: hand it to postgres, then drop privileges.
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}" >"$pwfile"
  "$PGBIN/initdb" --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  if [ "$db" != postgres ]; then
    "$PGBIN/pg_ctl" --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
    # psql interpolates :"db" (quoted as an identifier) only in what it reads, not in --command.
    echo 'CREATE DATABASE :"db";' | "$PGBIN/psql" --username="$user" --dbname=postgres \
      --quiet --no-psqlrc --set=ON_ERROR_STOP=1 --set=db="$db"
    "$PGBIN/pg_ctl" --pgdata="$PGDATA" --mode=fast --wait --silent stop
  fi
  echo "initialised $PGDATA: user $user, database $db"
fi

if [ "${1:-}" = postgres ]; then shift; fi
exec "$PGBIN/postgres" "$@"
