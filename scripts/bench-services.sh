#!/usr/bin/env bash
# Supervised services: from `kill -9` of a service to the firing alert at a webhook, against
# the kernel's own exit-report time, in one run. See scripts/services_bench.py.
#   scripts/bench-services.sh [--trials 200] [--services 8]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$here/scripts/services_bench.py" "$@"
