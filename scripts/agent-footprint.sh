#!/usr/bin/env bash
# The agent's footprint beside node_exporter's, measured in one run on this host: both collect
# every second for VIGIE_FOOTPRINT_SECONDS (default 120) — node_exporter scraped every second,
# the agent streaming to a real control plane and PostgreSQL (fsync on) — and the figures are
# printed as ratios to node_exporter's, with the targets from docs/performance.md.
#   scripts/agent-footprint.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" >/dev/null
"$here/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$here/scripts/agent_footprint.py" "$here"
