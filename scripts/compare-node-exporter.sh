#!/usr/bin/env bash
# Runs node_exporter (Debian's prometheus-node-exporter, default collectors) and the agent on
# this host, and prints the metric families node_exporter has and the agent lacks, and the
# reverse. Families docs/collectors.md lists as left out (with the reason) are marked so.
#   scripts/compare-node-exporter.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh" >/dev/null
"$here/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$here/scripts/node_exporter_compare.py" "$here"
