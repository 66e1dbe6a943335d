#!/usr/bin/env bash
# One command to try Vigie on this machine: installs dependencies, builds, and starts the whole
# system on loopback (private PostgreSQL, control plane, notifier, a webhook sink, one agent).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
# Running it again restarts the system (data in .vigie/ is kept).
"$here/scripts/dev-env.sh" stop >/dev/null
"$here/scripts/dev-env.sh" start
# shellcheck disable=SC1091
. "$here/.vigie/env"
buf=".vigie/tools/bin/buf curl --protocol grpc --cacert $CA_FILE -H \"authorization: Bearer \$VIGIE_TOKEN\" --reflect-header '*'"
cat <<EOF2

Vigie is running on loopback with TLS and tokens on (state, configs and logs in .vigie/;
CA in .vigie/tls/, tokens in .vigie/secrets/):
  control plane   gRPC $CONTROLPLANE_GRPC   metrics http://$CONTROLPLANE_HTTP/metrics
  notifier        gRPC $NOTIFIER_GRPC   metrics http://$NOTIFIER_HTTP/metrics
  agent           metrics http://$AGENT_HTTP/metrics   (node_exporter names)
  PostgreSQL      password authentication; the URL is in $DATABASE_URL_FILE
  webhook sink    alerts land in $WEBHOOK_SINK_LOG
  logs            $LOG_DIR/

List agents through the Admin API (buf curl is a grpcurl stand-in installed by setup.sh),
with the bootstrap admin token:
  export VIGIE_TOKEN=\$(cat $ADMIN_TOKEN_FILE)
  $buf -d '{}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/ListAgents
  (grpcurl: grpcurl -cacert $CA_FILE -H "authorization: Bearer \$VIGIE_TOKEN" -d '{}' $CONTROLPLANE_GRPC vigie.v1.Admin/ListAgents)

Make a token for an agent on another host (docs/security.md shows its config):
  $buf -d '{"kind": "TOKEN_KIND_AGENT", "agentId": "web2"}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/CreateToken

Read samples back (raw, or 5-minute rollups over up to 400 days; docs/storage.md):
  $buf -d '{"agentId": "$AGENT_ID", "metric": "node_load1", "range": "10m"}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/QuerySamples
  $buf -d '{"agentId": "$AGENT_ID", "metric": "node_load1", "range": "7d", "rollup": "ROLLUP_MAX"}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/QuerySamples

Make an alert fire (rule DemoValueHigh: demo_value > 100 for 5s), then resolve it:
  echo 'demo_value 500' > $TEXTFILE_DIR/demo.prom; sleep 15; cat $WEBHOOK_SINK_LOG
  echo 'demo_value 1'   > $TEXTFILE_DIR/demo.prom
Break a checked service (check "site" on http://$SITE/, rule SiteDown), then mend it:
  echo down > $SITE_DIR/index.html; sleep 8; cat $WEBHOOK_SINK_LOG
  $buf -d '{"status": "CHECK_STATUS_CRITICAL"}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/ListChecks
  echo ok > $SITE_DIR/index.html
Kill the supervised service "worker" (the agent restarts it; rule ServiceDown fires, then
resolves once it has run 10s), then see its state and restart it through the Admin API:
  kill -9 \$(pgrep -xf '/usr/bin/python3 -m http.server --bind 127.0.0.1 ${WORKER#*:}'); sleep 2; cat $WEBHOOK_SINK_LOG
  $buf -d '{}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/ListServices
  $buf -d '{"agentId": "$AGENT_ID", "name": "worker"}' https://$CONTROLPLANE_GRPC/vigie.v1.Admin/RestartService
See what the notifier delivered (its delivery log; email, SMS and Slack: docs/notifications.md):
  .vigie/tools/bin/buf curl --protocol grpc --cacert $CA_FILE -H "authorization: Bearer \$(cat $NOTIFIER_TOKEN_FILE)" --reflect-header '*' -d '{}' https://$NOTIFIER_GRPC/vigie.v1.Notifier/ListDeliveries

Stop everything:  scripts/dev-env.sh stop
EOF2
