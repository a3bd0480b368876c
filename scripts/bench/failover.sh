#!/bin/sh
# HA failover: two units in the namespace lab, kill -9 of the active while clients open new
# connections and keep long-lived ones; prints detection, takeover and what clients saw.
# Options: scripts/bench/failover.py --help. Needs root and a build (meson compile -C build).
set -eu
exec /usr/bin/python3 "$(dirname "$0")/failover.py" "$@"
