#!/usr/bin/env bash
# Configures and builds Vigie into build/ (binaries in build/bin/).
#   scripts/build.sh                  # RelWithDebInfo
#   VIGIE_SANITIZE=address scripts/build.sh   # ASan+UBSan build in build-address/
#   VIGIE_SANITIZE=thread  scripts/build.sh   # TSan build in build-thread/
#   VIGIE_COMPILER=clang   scripts/build.sh   # clang with -Wthread-safety, in build-clang/
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
san=${VIGIE_SANITIZE:-}
compiler=${VIGIE_COMPILER:-}
dir="$here/build${san:+-$san}${compiler:+-$compiler}"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cxx=()
case "$compiler" in
  "") ;;
  clang) cxx=(-DCMAKE_CXX_COMPILER=clang++) ;;
  *) echo "build.sh: VIGIE_COMPILER must be empty or clang, not '$compiler'" >&2; exit 2 ;;
esac
if [ ! -f "$dir/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$dir" "${generator[@]}" "${cxx[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DVIGIE_SANITIZE="$san"
fi
cmake --build "$dir" -j "$(nproc)"
echo "build.sh: built into $dir"
