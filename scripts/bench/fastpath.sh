#!/bin/sh
# Load-balancing fast path: tandemd vs dpdk-testpmd io forwarding on two memif vdevs, one worker
# core, same run. Options: scripts/bench/fastpath.py --help. Needs root and a build
# (meson setup build && meson compile -C build; or --build DIR).
set -eu
exec /usr/bin/python3 "$(dirname "$0")/fastpath.py" "$@"
