#!/usr/bin/env bash
# Installs every system dependency Vigie needs to build, run and test, with apt-get.
# Idempotent; for a fresh Debian 12 machine, as root or through sudo.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

packages=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates curl clang clang-format
  # RPC and serialization
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # support libraries
  libabsl-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev
  libcurl4-openssl-dev libre2-dev libpqxx-dev libpq-dev prometheus-cpp-dev libcivetweb-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # TLS (libssl for hashing and certificate checks; openssl to make certificates)
  libssl-dev openssl
  # CRC-32 for the agent's spool
  zlib1g-dev
  # snappy for Prometheus remote write
  libsnappy-dev
  # the notifier's templates (Mustache)
  libkainjow-mustache-dev
  # database and test peers
  postgresql-15 postgresql-client-15 python3 procps iproute2
  # a raw gRPC client for the contract's bad-input tests (Debian's, for /usr/bin/python3)
  python3-grpcio python3-protobuf
  # real Prometheus for the scrape and remote-write tests; VictoriaMetrics for remote write
  prometheus victoria-metrics
  # a real SMTP server (STARTTLS, AUTH) for the email tests; nginx as the notifier
  # benchmark's sink (a Python sink cannot keep up)
  python3-aiosmtpd nginx-light
  # service checks: c-ares for DNS (checks and name resolution that never blocks), hiredis for
  # Redis, and the real servers the check tests probe (dnsmasq, redis-server, Nagios plugins)
  libc-ares-dev libhiredis-dev dnsmasq-base redis-server monitoring-plugins-basic
  python3-cryptography
  # the check benchmark's reference (scripts/bench-checks.sh)
  prometheus-blackbox-exporter
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  # Passed on the command line: sudo resets the environment.
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
else
  echo "setup.sh: all system packages present"
fi

# buf: the reflection client the end-to-end tests use in place of grpcurl (not packaged by
# Debian). A pinned static binary from the npm registry, checked against its known digest.
BUF_VERSION=1.75.0
BUF_SHA256=98b19d4b2b46130e083157490c54dfdcb8ea771e53204d3c6a06a2b12edd0503
tools="$here/.vigie/tools"
if [ ! -x "$tools/bin/buf" ]; then
  mkdir -p "$tools/bin"
  tmp=$(mktemp -d)
  curl -fsSL --retry 3 -o "$tmp/buf.tgz" \
    "https://registry.npmjs.org/@bufbuild/buf-linux-x64/-/buf-linux-x64-${BUF_VERSION}.tgz"
  if ! echo "$BUF_SHA256  $tmp/buf.tgz" | sha256sum -c --status; then
    echo "setup.sh: buf-linux-x64-${BUF_VERSION}.tgz does not match its SHA-256; not installed" >&2
    rm -rf "$tmp"
    exit 1
  fi
  tar -xzf "$tmp/buf.tgz" -C "$tmp" package/bin/buf
  install -m 0755 "$tmp/package/bin/buf" "$tools/bin/buf"
  rm -rf "$tmp"
fi
# node_exporter, for scripts/compare-node-exporter.sh and the agent's footprint benchmark:
# Debian's package, unpacked rather than installed, so no service starts listening on :9100.
if [ ! -x "$tools/bin/node_exporter" ]; then
  mkdir -p "$tools/bin"
  tmp=$(mktemp -d)
  chmod 0755 "$tmp"  # apt's _apt user writes the download
  (cd "$tmp" && apt-get download -qq prometheus-node-exporter 2>/dev/null)
  dpkg-deb -x "$tmp"/prometheus-node-exporter_*.deb "$tmp/x"
  install -m 0755 "$tmp/x/usr/bin/prometheus-node-exporter" "$tools/bin/node_exporter"
  rm -rf "$tmp"
fi
echo "setup.sh: done"
