#!/usr/bin/env bash
# The notifier benchmark: deliveries per second and added latency against a plain keep-alive
# libcurl loop to the same nginx sink. See scripts/notifier_bench.py.
#   scripts/bench-notifier.sh [--n 20000] [--concurrency 32] [--workers 8] [--no-spool]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/build.sh" >/dev/null
exec /usr/bin/python3 "$here/scripts/notifier_bench.py" "$@"
