#!/usr/bin/env bash
# The service-check benchmark: CPU per probe and RSS of the agent's checks against Debian's
# prometheus-blackbox-exporter probing the same local targets at the same rate, in one run.
# See scripts/checks_bench.py.
#   scripts/bench-checks.sh [--targets 200] [--interval 5] [--seconds 60]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$here/scripts/checks_bench.py" "$@"
