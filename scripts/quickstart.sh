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
buf=".vigie/tools/bin/buf curl --protocol grpc --http2-prior-knowledge"
cat <<EOF2

Vigie is running on loopback (state, configs and logs in .vigie/):
  control plane   gRPC $CONTROLPLANE_GRPC   metrics http://$CONTROLPLANE_HTTP/metrics
  notifier        gRPC $NOTIFIER_GRPC   metrics http://$NOTIFIER_HTTP/metrics
  agent           metrics http://$AGENT_HTTP/metrics   (node_exporter names)
  PostgreSQL      $DATABASE_URL
  webhook sink    alerts land in $WEBHOOK_SINK_LOG
  logs            $LOG_DIR/

List agents through the Admin API (buf curl is a grpcurl stand-in installed by setup.sh):
  $buf -d '{}' http://$CONTROLPLANE_GRPC/vigie.v1.Admin/ListAgents
  (grpcurl: grpcurl -plaintext -d '{}' $CONTROLPLANE_GRPC vigie.v1.Admin/ListAgents)

Make an alert fire (rule DemoValueHigh: demo_value > 100 for 5s), then resolve it:
  echo 'demo_value 500' > $TEXTFILE_DIR/demo.prom; sleep 15; cat $WEBHOOK_SINK_LOG
  echo 'demo_value 1'   > $TEXTFILE_DIR/demo.prom

Stop everything:  scripts/dev-env.sh stop
EOF2
