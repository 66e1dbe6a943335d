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
if [ -z "$san" ]; then
  # clang's -Wthread-safety checks every lock annotation; the build failing is the test.
  VIGIE_COMPILER=clang "$here/scripts/build.sh"
fi
cd "$here/build${san:+-$san}"
args=()
case "$san" in
  address)
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ;;
  thread)
    # Debian's gRPC core (and abseil) are not TSan-instrumented: their synchronization is
    # invisible, so every gRPC server would be reported. TSan checks the unit tests (our mutexes,
    # worker pool, outbox, delivery queue, tokens); the tests that run real gRPC servers (label
    # grpc) and the end-to-end tests run under ASan and plain.
    export TSAN_OPTIONS="halt_on_error=1:ignore_noninstrumented_modules=1:suppressions=$here/scripts/tsan-suppressions.txt"
    args+=(-LE 'e2e|grpc')
    ;;
esac
ctest --output-on-failure --timeout 600 "${args[@]}" "$@"
