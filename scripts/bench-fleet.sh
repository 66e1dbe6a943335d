#!/usr/bin/env bash
# Fleet benchmarks: end-to-end ingest throughput with the load generator, and memory per idle
# TLS agent at 1,000 and 10,000 agents, each against a baseline measured in the same run.
# See scripts/fleet_bench.py for the options.
#   scripts/bench-fleet.sh [--idle 1000,10000] [--agents 8] [--seconds 20]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$here/scripts/fleet_bench.py" "$@"
