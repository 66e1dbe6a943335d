#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for development and tests.
#   scripts/pg-cluster.sh start DIR     # prints DATABASE_URL=..., PGDATA=..., PGSOCKET=..., PGPORT=...
#   scripts/pg-cluster.sh stop DIR
# DIR holds the cluster (DIR/data) unless the server's user cannot reach it (e.g. a checkout
# under /root, mode 0700): then the data lives in /var/tmp/vigie-pg-<hash> and DIR/data is a
# symlink to it. PostgreSQL refuses to run as root, so as root it runs as the "postgres" user.
# The Unix socket goes to a short /tmp directory (socket paths must fit in 107 bytes).
# Authentication is "trust", and the server listens on 127.0.0.1 only.
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
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
      chmod 0700 "$data"
      as_pg "$PGBIN/initdb" -D "$data" -U vigie --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    sock=$(mktemp -d /tmp/vigie-pgsock.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$sock"
    # Whatever fails from here on leaves no server and no socket directory behind.
    trap 'as_pg "$PGBIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$sock"' ERR
    started=""
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      if as_pg "$PGBIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
          -o "-c listen_addresses=127.0.0.1 -p $port -k $sock -c fsync=off" start >/dev/null; then
        started=1; break
      fi
      sleep 0.2  # most likely "address in use": another port
    done
    [ -n "$started" ] || { tail -20 "$data/server.log" >&2; rm -rf "$sock"; exit 1; }
    url="postgresql://vigie@127.0.0.1:$port/vigie"
    if ! psql "postgresql://vigie@127.0.0.1:$port/postgres" -Atqc \
        "select 1 from pg_database where datname = 'vigie'" | grep -q 1; then
      psql "postgresql://vigie@127.0.0.1:$port/postgres" -qc 'create database vigie' >/dev/null
    fi
    trap - ERR
    printf '%s\n' "$sock" > "$dir/socket_dir"
    echo "DATABASE_URL=$url"
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
