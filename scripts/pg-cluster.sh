#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for development and tests.
#   scripts/pg-cluster.sh start DIR     # prints DATABASE_URL=..., DATABASE_URL_FILE=...,
#                                       #   ADMIN_DATABASE_URL=..., PGDATA=..., PGSOCKET=..., PGPORT=...
#   scripts/pg-cluster.sh stop DIR
# DIR holds the cluster (DIR/data) unless the server's user cannot reach it (e.g. a checkout
# under /root, mode 0700): then the data lives in /var/tmp/vigie-pg-<hash> and DIR/data is a
# symlink to it. PostgreSQL refuses to run as root, so as root it runs as the "postgres" user.
# The Unix socket goes to a short /tmp directory (socket paths must fit in 107 bytes).
# fsync is off (tests) unless VIGIE_PG_FSYNC=on (benchmarks, and the quickstart's data).
# Authentication is SCRAM-SHA-256 with passwords generated into DIR (mode 0600): the superuser
# "vigie_admin" (DIR/superuser.password) and the application role "vigie" (DIR/app.password),
# an ordinary role that owns the database "vigie". DATABASE_URL (with the app password) is also
# written to DIR/database_url for configs that read secrets from files. The server listens on
# 127.0.0.1 only.
set -euo pipefail

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

as_pg() {
  # From / so the server's user is not left in a directory it cannot enter.
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

datadir() {
  if [ -L "$dir/data" ]; then readlink -f "$dir/data"; return; fi
  if [ "$(id -u)" -ne 0 ] || runuser -u postgres -- test -w "$dir" 2>/dev/null; then
    echo "$dir/data"; return
  fi
  # Try to hand the directory to postgres; that fails when a parent is not traversable.
  chown postgres: "$dir" 2>/dev/null || true
  if runuser -u postgres -- test -w "$dir" 2>/dev/null; then echo "$dir/data"; return; fi
  local hash; hash=$(printf '%s' "$dir" | sha256sum | cut -c1-12)
  local real="/var/tmp/vigie-pg-$hash"
  mkdir -p "$real" && chown postgres: "$real" && chmod 0700 "$real"
  ln -sfn "$real" "$dir/data"
  echo "$real"
}

case "$cmd" in
  start)
    data=$(datadir)
    if [ -f "$data/PG_VERSION" ] && [ ! -f "$dir/superuser.password" ]; then
      # A cluster from before passwords (trust authentication): set it aside, start afresh.
      echo "pg-cluster: $data used trust authentication; moved to $data.trust-old" >&2
      rm -rf "$data.trust-old"; mv "$data" "$data.trust-old"
      data=$(datadir)
    fi
    umask 077
    [ -f "$dir/superuser.password" ] || openssl rand -hex 24 >"$dir/superuser.password"
    [ -f "$dir/app.password" ] || openssl rand -hex 24 >"$dir/app.password"
    umask 022
    su_pw=$(cat "$dir/superuser.password"); app_pw=$(cat "$dir/app.password")
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
      chmod 0700 "$data"
      pwfile=$(mktemp /tmp/vigie-pgpw.XXXXXX)
      cp "$dir/superuser.password" "$pwfile"
      [ "$(id -u)" -eq 0 ] && chown postgres: "$pwfile"
      as_pg "$PGBIN/initdb" -D "$data" -U vigie_admin --auth=scram-sha-256 --pwfile="$pwfile" \
        -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
        { rm -f "$pwfile"; cat "$dir/initdb.log" >&2; exit 1; }
      rm -f "$pwfile"
    fi
    sock=$(mktemp -d /tmp/vigie-pgsock.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$sock"
    # Whatever fails from here on leaves no server and no socket directory behind.
    trap 'as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$sock"' ERR
    started=""
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      if as_pg "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
          -o "-c listen_addresses=127.0.0.1 -p $port -k $sock -c fsync=${VIGIE_PG_FSYNC:-off}" \
          start >/dev/null; then
        started=1; break
      fi
      sleep 0.2  # most likely "address in use": another port
    done
    [ -n "$started" ] || { tail -20 "$data/server.log" >&2; rm -rf "$sock"; exit 1; }
    admin="postgresql://vigie_admin:$su_pw@127.0.0.1:$port/postgres"
    url="postgresql://vigie:$app_pw@127.0.0.1:$port/vigie"
    # The application role: no superuser, owner of its database only.
    psql "$admin" -v ON_ERROR_STOP=1 -Atq >/dev/null <<SQL
SELECT 'CREATE ROLE vigie LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigie')\\gexec
ALTER ROLE vigie LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '$app_pw';
SELECT 'CREATE DATABASE vigie OWNER vigie' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'vigie')\\gexec
SQL
    (umask 077; printf '%s\n' "$url" >"$dir/database_url")
    trap - ERR
    printf '%s\n' "$sock" > "$dir/socket_dir"
    echo "DATABASE_URL=$url"
    echo "DATABASE_URL_FILE=$dir/database_url"
    echo "ADMIN_DATABASE_URL=postgresql://vigie_admin:$su_pw@127.0.0.1:$port/vigie"
    echo "PGDATA=$data"
    echo "PGSOCKET=$sock"
    echo "PGPORT=$port"
    ;;
  stop)
    data=$(datadir)
    if [ -f "$data/postmaster.pid" ]; then
      as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null || true
    fi
    if [ -f "$dir/socket_dir" ]; then rm -rf "$(cat "$dir/socket_dir")" "$dir/socket_dir"; fi
    ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
