#!/usr/bin/env bash
# Tandem demo: install what is missing, build, then run a client + one tandemd unit in network
# namespaces (ARP, ping, neighbours, counters) and clean up. Needs root. Usage:
#   scripts/demo.sh [--driver af_xdp|af_packet]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (network namespaces, DPDK)" >&2
  exit 1
fi

scripts/install-deps
if [[ ! -f build/build.ninja ]]; then
  meson setup build >/dev/null
fi
echo "demo: building (meson compile -C build)..."
meson compile -C build >/tmp/tandem-demo-build.log 2>&1 || {
  tail -n 40 /tmp/tandem-demo-build.log >&2
  echo "demo: build failed (full log: /tmp/tandem-demo-build.log)" >&2
  exit 1
}

exec /usr/bin/python3 scripts/demo.py "$@"
