#!/usr/bin/env bash
# The whole system on loopback, in the background, for trying Vigie out:
# a private PostgreSQL, the control plane, the notifier, a webhook sink and one agent.
#   scripts/dev-env.sh start    # writes every address to .vigie/env (KEY=VALUE)
#   scripts/dev-env.sh status
#   scripts/dev-env.sh stop     # ends exactly the processes start started
# State, configs and logs live in .vigie/ (logs in .vigie/logs/). Needs a build (build/bin).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state="$here/.vigie"
bin="${VIGIE_BIN:-$here/build/bin}"
buf="${VIGIE_BUF:-$here/.vigie/tools/bin/buf}"
pids="$state/pids"

# N distinct free loopback ports: all sockets stay open until every port is chosen.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# True if PID is alive and is still the process we started: its command line contains MARKER
# (an argument unique to this checkout). Guards against pid reuse after a reboot.
ours() {  # PID MARKER
  alive "$1" && [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

wait_http() {  # URL PID NAME
  for _ in $(seq 1 100); do
    if curl -sf "$1" >/dev/null 2>&1; then return 0; fi
    if ! alive "$2"; then
      echo "dev-env: $3 exited during start-up; its log:" >&2
      tail -20 "$state/logs/$3.log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "dev-env: $3 did not answer on $1" >&2
  return 1
}

launch() {  # NAME MARKER CMD...
  local name=$1 marker=$2; shift 2
  nohup "$@" >"$state/logs/$name.log" 2>&1 &
  LAST_PID=$!
  echo "$name $LAST_PID $marker" >>"$pids"
}

start() {
  if [ -f "$pids" ]; then
    while read -r name pid marker; do
      if [ "$name" != pg ] && ours "$pid" "$marker"; then
        echo "dev-env: already running ($name pid $pid); 'scripts/dev-env.sh stop' first" >&2
        exit 1
      fi
    done <"$pids"
    rm -f "$pids"
  fi
  # A PostgreSQL left over from an interrupted run would keep the cluster locked.
  "$here/scripts/pg-cluster.sh" stop "$state/pg" >/dev/null 2>&1 || true
  for b in vigie-controlplane vigie-notifier vigie-agent; do
    [ -x "$bin/$b" ] || { echo "dev-env: $bin/$b missing; run scripts/build.sh" >&2; exit 1; }
  done
  mkdir -p "$state/logs" "$state/textfile"
  : >"$pids"
  trap 'echo "dev-env: start failed; stopping what was started" >&2; stop >/dev/null 2>&1 || true' ERR

  echo "pg - -" >>"$pids"  # recorded first, so a failed start still stops it
  local pgenv; pgenv=$(VIGIE_PG_FSYNC=${VIGIE_PG_FSYNC:-on} "$here/scripts/pg-cluster.sh" start "$state/pg")
  local DATABASE_URL; DATABASE_URL=$(echo "$pgenv" | sed -n 's/^DATABASE_URL=//p')
  local DATABASE_URL_FILE; DATABASE_URL_FILE=$(echo "$pgenv" | sed -n 's/^DATABASE_URL_FILE=//p')

  # A private CA, one server certificate for 127.0.0.1 (control plane and notifier), and the
  # tokens: the bootstrap admin token and the notifier's client token (kept across restarts).
  local tls="$state/tls" secrets="$state/secrets"
  mkdir -p "$tls" "$secrets"; chmod 0700 "$secrets"
  if [ ! -f "$tls/server.crt" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=Vigie dev CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=vigie" \
      -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 825 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
    chmod 0600 "$tls"/*.key
  fi
  for t in admin notifier; do
    [ -s "$secrets/$t.token" ] || (umask 077; echo "vigie_$(openssl rand -hex 32)" >"$secrets/$t.token")
  done

  local ports; read -r -a ports <<<"$(free_ports 8)"
  local cp_grpc="127.0.0.1:${ports[0]}" cp_http="127.0.0.1:${ports[1]}"
  local nt_grpc="127.0.0.1:${ports[2]}" nt_http="127.0.0.1:${ports[3]}"
  local ag_http="127.0.0.1:${ports[4]}" sink="127.0.0.1:${ports[5]}"
  # A local web site the agent checks (docs/checks.md): break it by editing its page.
  local site="127.0.0.1:${ports[6]}"
  # A service the agent keeps running (docs/services.md): kill it and watch it come back.
  local worker="127.0.0.1:${ports[7]}"
  local sink_log="$state/webhook-sink.jsonl"
  : >"$sink_log"

  cat >"$state/notifier.yaml" <<YAML
grpc_listen: $nt_grpc
http_listen: $nt_http
tls: {cert_file: $tls/server.crt, key_file: $tls/server.key}
client_token: {file: $secrets/notifier.token}
receivers:
  - name: local-sink
    webhook: {url: "http://$sink/hook", timeout: 5s}
retry_backoff: {initial: 1s, max: 30s}
spool_directory: $state/notifier-spool
# The delivery log (ListDeliveries) and idempotency keys, in the same database.
database_url_from: {file: $DATABASE_URL_FILE}
# Alert when the control plane stops calling Heartbeat (it does every 60s).
deadman: {after: 5m}
YAML
  cat >"$state/controlplane.yaml" <<YAML
grpc_listen: $cp_grpc
http_listen: $cp_http
tls: {cert_file: $tls/server.crt, key_file: $tls/server.key}
database_url_from: {file: $DATABASE_URL_FILE}
bootstrap_admin_token: {file: $secrets/admin.token}
notifier: $nt_grpc
notifier_token: {file: $secrets/notifier.token}
notifier_tls: {ca_file: $tls/ca.crt}
rules:
  - name: RootFilesystemLow
    metric: node_filesystem_avail_bytes
    matchers: {mountpoint: /}
    op: "<"
    threshold: 1073741824
    for: 1m
    severity: critical
    annotations: {summary: "Less than 1 GiB free on /"}
  - name: DemoValueHigh
    metric: demo_value
    op: ">"
    threshold: 100
    for: 5s
    annotations: {summary: "demo_value is above 100 (edit .vigie/textfile/demo.prom)"}
  - name: SiteDown
    check: {names: [site]}
    severity: critical
  - name: ServiceDown
    service: {}
    severity: critical
YAML
  local agent_id; agent_id=$(hostname | tr -c 'A-Za-z0-9._\n-' '-')
  cat >"$state/agent.yaml" <<YAML
agent_id: $agent_id
controlplane: $cp_grpc
token: {file: $secrets/agent.token}
tls: {ca_file: $tls/ca.crt}
http_listen: $ag_http
collect_interval: 5s
heartbeat_interval: 10s
textfile_directory: $state/textfile
spool: {directory: $state/agent-spool}
labels: {env: dev}
service_state_directory: $state/services
services:
  - name: worker
    command: [/usr/bin/python3, -m, http.server, --bind, 127.0.0.1, "${worker#*:}"]
    working_directory: $state/site
    backoff: {initial: 1s, max: 30s}
    stable_after: 10s
    log: {directory: $state/logs/services, max_bytes: 1048576, keep: 2}
checks:
  - name: site
    target: http://$site/
    interval: 5s
    timeout: 2s
    http: {body_contains: ok}
YAML
  echo "demo_value 1" >"$state/textfile/demo.prom"
  mkdir -p "$state/site"
  echo "ok" >"$state/site/index.html"

  launch webhook-sink "$sink_log" /usr/bin/python3 "$here/scripts/webhook_sink.py" "$sink" "$sink_log"
  wait_http "http://$sink/" "$LAST_PID" webhook-sink
  launch site "$state/site" /usr/bin/python3 -m http.server --bind 127.0.0.1 \
    --directory "$state/site" "${site#*:}"
  wait_http "http://$site/" "$LAST_PID" site
  launch notifier "--config=$state/notifier.yaml" "$bin/vigie-notifier" --config="$state/notifier.yaml"
  wait_http "http://$nt_http/healthz" "$LAST_PID" notifier
  launch controlplane "--config=$state/controlplane.yaml" "$bin/vigie-controlplane" \
    --config="$state/controlplane.yaml"
  wait_http "http://$cp_http/healthz" "$LAST_PID" controlplane
  # The agent's token, made through the Admin API as an operator would (once; kept after).
  if [ ! -s "$secrets/agent.token" ]; then
    local out
    out=$("$buf" curl --protocol grpc --cacert "$tls/ca.crt" \
      -H "authorization: Bearer $(cat "$secrets/admin.token")" --reflect-header '*' \
      -d "{\"kind\": \"TOKEN_KIND_AGENT\", \"agentId\": \"$agent_id\", \"description\": \"dev-env agent\"}" \
      "https://$cp_grpc/vigie.v1.Admin/CreateToken")
    (umask 077; echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' \
      >"$secrets/agent.token")
  fi
  launch agent "--config=$state/agent.yaml" "$bin/vigie-agent" --config="$state/agent.yaml"
  wait_http "http://$ag_http/healthz" "$LAST_PID" agent
  trap - ERR

  cat >"$state/env" <<ENV
DATABASE_URL_FILE=$DATABASE_URL_FILE
CONTROLPLANE_GRPC=$cp_grpc
CONTROLPLANE_HTTP=$cp_http
NOTIFIER_GRPC=$nt_grpc
NOTIFIER_HTTP=$nt_http
AGENT_HTTP=$ag_http
WEBHOOK_SINK=$sink
WEBHOOK_SINK_LOG=$sink_log
TEXTFILE_DIR=$state/textfile
SITE_DIR=$state/site
SITE=$site
WORKER=$worker
LOG_DIR=$state/logs
$(echo "$pgenv" | grep -E '^(PGDATA|PGSOCKET|PGPORT)=')
CA_FILE=$tls/ca.crt
ADMIN_TOKEN_FILE=$secrets/admin.token
NOTIFIER_TOKEN_FILE=$secrets/notifier.token
AGENT_ID=$agent_id
ENV
  echo "dev-env: started; addresses in $state/env"
}

stop() {
  [ -f "$pids" ] || { echo "dev-env: nothing started"; return 0; }
  # Reverse order of start: agent first, PostgreSQL last.
  tac "$pids" | while read -r name pid marker; do
    if [ "$name" = pg ]; then
      "$here/scripts/pg-cluster.sh" stop "$state/pg"
    elif ours "$pid" "$marker"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
      if ours "$pid" "$marker"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  done
  # The agent leaves its services running for the next agent (docs/services.md): stop them.
  if [ -f "$state/agent.yaml" ]; then
    "$bin/vigie-agent" stop-services --config="$state/agent.yaml" >/dev/null 2>&1 || true
  fi
  rm -f "$pids" "$state/env"
  echo "dev-env: stopped"
}

status() {
  [ -f "$pids" ] || { echo "dev-env: not running"; return 0; }
  while read -r name pid marker; do
    if [ "$name" = pg ]; then
      if [ -f "$state/pg/data/postmaster.pid" ] &&
          kill -0 "$(head -1 "$state/pg/data/postmaster.pid")" 2>/dev/null; then
        echo "postgresql  running"
      else
        echo "postgresql  DOWN"
      fi
    elif ours "$pid" "$marker"; then
      echo "$name  running (pid $pid)"
    else
      echo "$name  DOWN (pid $pid; see $state/logs/$name.log)"
    fi
  done <"$pids"
  if [ -f "$state/env" ]; then cat "$state/env"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
