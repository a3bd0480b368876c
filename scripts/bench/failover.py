"""HA failover, measured: two units (tandemlab.ha.ha_lab, nat mode, three backends), and per
round a kill -9 of the active unit while the client

  - opens a new TCP connection to the VIP every 5 ms (50 ms timeout each): the client-seen
    recovery time for new connections is the first success after the kill;
  - keeps N long-lived connections to an echo service, each sending a numbered 8-byte message
    every 5 ms and checking every echo: the longest pause per connection is the stall an
    established session sees (TCP retransmission included), and a connection that breaks or
    gets a wrong byte counts as lost.

The killed unit is started again (it comes back as standby) and the next round kills the other
one. Detection and takeover come from the new active's `tandemctl ha status`. Every load loop
is bounded in time; traffic stays inside the lab's namespaces."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import benchlib  # noqa: F401  (puts tests/e2e on sys.path)
from tandemlab.lab import Lab
from tandemlab import ha as hal

PROBE = r'''
import json, socket, struct, sys, threading, time
vip, web, echo_port, sessions, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
end = time.monotonic() + duration
out = {"connects": [], "sessions": []}
def connects():
    while time.monotonic() < end:
        t = time.monotonic()
        s = socket.socket(); s.settimeout(0.05)
        try:
            s.connect((vip, web)); ok = True
        except OSError:
            ok = False
        finally:
            s.close()
        out["connects"].append((t, ok))
        time.sleep(max(0.0, 0.005 - (time.monotonic() - t)))
def session(i):
    r = {"max_gap": 0.0, "sent": 0, "lost": None}
    try:
        s = socket.create_connection((vip, echo_port), timeout=5)
        s.settimeout(5)
        f = s.makefile("rb")
        f.readline()  # the server's greeting
        last = time.monotonic()
        n = 0
        while time.monotonic() < end:
            s.sendall(struct.pack("!Q", n))
            got = f.read(8)
            if len(got) != 8 or struct.unpack("!Q", got)[0] != n:
                r["lost"] = "wrong or missing echo"; break
            now = time.monotonic()
            r["max_gap"] = max(r["max_gap"], now - last)
            last = now; n += 1
            time.sleep(0.005)
        r["sent"] = n
        s.close()
    except OSError as e:
        r["lost"] = str(e)
    out["sessions"].append(r)
ts = [threading.Thread(target=connects)] + [threading.Thread(target=session, args=(i,)) for i in range(sessions)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
'''


def one_round(t, victim: str, survivor: str, args) -> dict:
    client = t.client
    probe = client.spawn_python(PROBE, t.vip, str(hal.WEB), str(hal.ECHO), str(args.sessions),
                                str(args.seconds), log_name=f"probe-{time.monotonic_ns()}")
    time.sleep(args.seconds / 3)
    killed_at = time.monotonic()
    t.units[victim].unit.kill()
    deadline = time.monotonic() + args.seconds + 10
    while probe.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    result = json.loads(probe.log().strip().splitlines()[-1])
    st = hal.status(t.units[survivor])
    f = st.last_failover
    after = [c for c in result["connects"] if c[0] >= killed_at]
    first_ok = next((c[0] for c in after if c[1]), None)
    return {
        "detection_ms": f.detection_ms if f else None,
        "takeover_ms": f.takeover_ms if f else None,
        "new_connection_ms": round((first_ok - killed_at) * 1000) if first_ok else None,
        "sessions": len(result["sessions"]),
        "sessions_lost": sum(1 for s in result["sessions"] if s["lost"]),
        "max_stall_ms": round(max((s["max_gap"] for s in result["sessions"]), default=0) * 1000),
        "messages": sum(s["sent"] for s in result["sessions"]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=8, help="long-lived echo connections")
    ap.add_argument("--seconds", type=float, default=3.0, help="probe duration per round (the kill at 1/3)")
    ap.add_argument("--json", action="store_true", help="print the rounds as JSON")
    args = ap.parse_args()
    benchlib.require_root()
    os.environ.setdefault("TANDEMD", str(benchlib.REPO / "build" / "controlplane" / "tandemd"))
    rows = []
    with Lab(prefix="tb") as lab:
        t = hal.ha_lab(lab, subnet_n="10.199.160", subnet_s="10.199.161", subnet_sync="10.199.162")
        active, standby = "a", "b"
        for i in range(args.rounds):
            hal.wait_roles(t, {active: "active", standby: "standby"}, timeout=10)
            row = one_round(t, active, standby, args)
            row["round"] = i + 1
            row["killed"] = active
            rows.append(row)
            print(f"round {i + 1}: kill -9 {active}: detection {row['detection_ms']} ms, takeover "
                  f"{row['takeover_ms']} ms, first new connection after {row['new_connection_ms']} ms, "
                  f"{row['sessions'] - row['sessions_lost']}/{row['sessions']} sessions kept "
                  f"(longest stall {row['max_stall_ms']} ms)", flush=True)
            t.units[active].unit.start()
            active, standby = standby, active
    if args.json:
        print(json.dumps(rows, indent=2))
    def med(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return f"{statistics.median(vals):g} (min {min(vals)}, max {max(vals)})" if vals else "n/a"
    print(f"\n{len(rows)} rounds, load {benchlib.load_average()}")
    print(f"  detection (ms):               {med('detection_ms')}")
    print(f"  takeover (ms):                {med('takeover_ms')}")
    print(f"  first new connection (ms):    {med('new_connection_ms')}")
    print(f"  longest session stall (ms):   {med('max_stall_ms')}")
    print(f"  sessions lost:                {sum(r['sessions_lost'] for r in rows)} of {sum(r['sessions'] for r in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
