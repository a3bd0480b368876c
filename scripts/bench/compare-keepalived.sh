#!/bin/sh
# Tandem against the Linux standard (keepalived VRRP + nftables DNAT + conntrackd FTFW) in the
# same namespace topology, under the same session load and the same fault; prints a table side
# by side (failover stall, sessions lost, new connections, CPU per Gbit).
# Options: compare_keepalived.py --help (--sessions N, --rounds R, --seconds S,
# --only tandem|kernel, --variants, --json PATH). Needs root and tandemd ($TANDEMD, else
# build/controlplane/tandemd).
# keepalived, conntrackd and nftables are installed here when missing (apt-get, Debian 12:
# keepalived 2.2.7, conntrackd 1.4.7); they are deliberately not in scripts/install-deps, as
# this benchmark is not part of the test suite.
set -eu
missing=""
for pkg in keepalived conntrackd nftables iperf3; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2
fi
exec /usr/bin/python3 "$(dirname "$0")/compare_keepalived.py" "$@"
