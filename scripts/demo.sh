#!/usr/bin/env bash
# Tandem demo: install what is missing, build, then run two tandemd units (A active, B standby)
# in network namespaces with a client and four backends, kill -9 the active one under a few
# hundred long-lived sessions and HTTP load, and report what the clients saw, with and without
# connection-state replication; then clean up. Needs root; under 2 minutes. Usage:
#   scripts/demo.sh [--driver af_xdp|af_packet] [--sessions N] [--seconds S] [--json]
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
