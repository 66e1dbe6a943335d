#!/usr/bin/env bash
# Configures and builds Vigie into build/ (binaries in build/bin/).
#   scripts/build.sh                  # RelWithDebInfo
#   VIGIE_SANITIZE=address scripts/build.sh   # ASan+UBSan build in build-address/
#   VIGIE_SANITIZE=thread  scripts/build.sh   # TSan build in build-thread/
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
san=${VIGIE_SANITIZE:-}
dir="$here/build${san:+-$san}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVIGIE_SANITIZE="$san"
fi
cmake --build "$dir" -j "$(nproc)"
echo "build.sh: built into $dir"
