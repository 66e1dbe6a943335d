#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test (unit tests and end-to-end tests).
#   scripts/test.sh                         # the README's test command; what CI runs
#   VIGIE_SANITIZE=address scripts/test.sh  # the same under ASan+UBSan (build-address/)
#   VIGIE_SANITIZE=thread  scripts/test.sh  # the same under TSan (build-thread/)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/setup.sh"
"$here/scripts/build.sh"
san=${VIGIE_SANITIZE:-}
cd "$here/build${san:+-$san}"
ctest --output-on-failure --timeout 600 "$@"
