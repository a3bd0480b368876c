#!/bin/sh
# State sync under a new-connection load: unit A (tandemd fed by tandem_gen over memif) replicates
# to unit B over a veth pair between two namespaces; prints replication throughput, lag and the
# sync threads' CPU per rate. Options: scripts/bench/sync.py --help. Needs root and a build
# (meson setup build && meson compile -C build; or --build DIR).
set -eu
exec /usr/bin/python3 "$(dirname "$0")/sync.py" "$@"
