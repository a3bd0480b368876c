"""Tandem against the Linux standard, side by side, in the same topology under the same load:

  tandem   two tandemd units (tandemlab.ha.ha_lab: AF_XDP, adverts every 10 ms, dead after 3,
           state sync on), the fault is kill -9 of the active tandemd;
  kernel   two Linux routers in the same namespaces (scripts/bench/keepalived/kernel_ha.py):
           keepalived VRRPv3 at its lowest advert interval (0.01 s) moving the VIP and the
           backends' gateway, nftables DNAT (numgen random by default) and conntrackd in FTFW
           mode with keepalived's notify hooks running conntrackd's primary-backup.sh as
           shipped; one column per conntrackd variant (--variants). The fault is the kernel
           router's kill -9: every link of the active goes down (killing a daemon would not
           stop the kernel forwarding), then its keepalived and conntrackd get SIGKILL.

Per round, the client (tandemlab.sessions) opens --sessions long-lived sessions (+20 probe
sessions sending every 5 ms) and a prober opens a new connection every 10 ms; a third into the
load the active unit fails. Figures: the longest pause a probe session saw (client-seen stall),
sessions lost (reset / stalled / corrupt), the first new connection after the fault, the
takeover (tandem: detection + takeover from `ha status`; kernel: keepalived's notify_master
hook start, i.e. after the VIP moved) and when the new active held the replicated state
(kernel: the hook's `conntrackd -c` commit done). The failed unit then comes back (as after a
reboot, as standby) and the next round fails the other one.

CPU per Gbit: iperf3 from the client to VIP:5201 (DNAT to backend 1) through the active unit;
whole-machine busy CPU from /proc/stat over the run divided by the Gbit transferred (softirq
forwarding work cannot be attributed per namespace, so both columns count the whole machine,
iperf3's own CPU included), and the same with the machine's busy rate measured idle just
before subtracted ("net").

keepalived, conntrackd and nftables are installed by compare-keepalived.sh when missing (Debian
packages); they are not in scripts/install-deps, as this benchmark is not part of the tests.
Every process, namespace and link is removed at exit (tandemlab.Lab)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import benchlib  # noqa: F401  (puts tests/e2e on sys.path)
sys.path.insert(0, str(Path(__file__).resolve().parent / "keepalived"))
import kernel_ha as kh  # noqa: E402
from tandemlab import ha as hal  # noqa: E402
from tandemlab.config import BackendConfig, ServiceConfig  # noqa: E402
from tandemlab.lab import Lab, install_signal_handlers  # noqa: E402
from tandemlab.sessions import (SESSION_PORT, ConnectProber, SessionEchoServer,  # noqa: E402
                                SessionLoad, lost)

IPERF_PORT = 5201
NETS = {"subnet_n": "10.199.176", "subnet_s": "10.199.177", "subnet_sync": "10.199.178"}
PROBE_EVERY, PROBE_TIMEOUT = 0.01, 0.1

VARIANTS = {
    "ext-cache": kh.Settings(),
    "no-ext-cache": kh.Settings(external_cache=False),
    "no-commit": kh.Settings(hooks=False),
    "notrack": kh.Settings(mode="NOTRACK", external_cache=False),
    "resend-1k": kh.Settings(external_cache=False, resend_queue=1024),
    "no-conntrackd": kh.Settings(conntrackd=False),
    "jhash": kh.Settings(balance="jhash"),
    "jhash-no-conntrackd": kh.Settings(balance="jhash", conntrackd=False),
}


# --- the two sides, behind one interface ---------------------------------------------------------

class TandemSide:
    name = "tandem"

    def __init__(self, lab: Lab, args):
        b1 = f"{NETS['subnet_s']}.21"
        vip = f"{NETS['subnet_n']}.{hal.VIP_HOST}"
        hosts = [f"{NETS['subnet_s']}.{20 + i}" for i in (1, 2, 3)]
        services = [ServiceConfig("sessions", vip, port=SESSION_PORT, mode="nat", group=1,
                                  backends=[BackendConfig(h) for h in hosts]),
                    ServiceConfig("iperf", vip, port=IPERF_PORT, mode="nat", group=1,
                                  backends=[BackendConfig(b1)])]
        self.t = hal.ha_lab(lab, services=services, servers=False, **NETS)
        self.label = "tandem (idle back-off on, adverts 10 ms x 3, sync async)"

    def wait_roles(self, active: str, standby: str) -> None:
        hal.wait_roles(self.t, {active: "active", standby: "standby"}, timeout=15)
        hal.wait_sync(self.t.unit(standby), lambda s: s.ready, "ready", timeout=15)

    def replicated(self, standby: str) -> int | None:
        return hal.conn_count(self.t.unit(standby), "--service", "sessions")

    def fault(self, victim: str) -> float:
        wall = time.time()
        self.t.unit(victim).kill()
        return wall

    def failover(self, survivor: str, fault_wall: float) -> dict:
        f = hal.status(self.t.unit(survivor)).last_failover
        if f is None or f.detection_ms is None:
            return {"takeover_ms": None, "ready_ms": None, "detection_ms": None}
        total = f.detection_ms + (f.takeover_ms or 0)
        return {"detection_ms": f.detection_ms, "takeover_ms": round(total, 1),
                "ready_ms": round(total, 1)}      # the state was in the table already

    def restore(self, victim: str) -> None:
        self.t.unit(victim).start()

    def active(self) -> str:
        return hal.active_unit(self.t) or "a"

    def transitions(self) -> dict:
        return {k: hal.status(u).transitions[-4:] for k, u in self.t.units.items()
                if u.running()}


class KernelSide:
    name = "kernel"

    def __init__(self, lab: Lab, args, settings: kh.Settings):
        self.k = kh.kernel_ha_lab(lab, settings, ports={SESSION_PORT: None,
                                                        IPERF_PORT: [f"{NETS['subnet_s']}.21"]},
                                  **NETS)
        self.t = self.k.t
        self.label = f"kernel: keepalived advert_int {settings.advert_int:g} s + nft DNAT + " \
                     f"{settings.label()}"

    def wait_roles(self, active: str, standby: str) -> None:
        self.k.wait_roles(active, standby, timeout=30)

    def active(self) -> str:
        return self.k.active() or "a"

    def replicated(self, standby: str) -> int | None:
        return self.k.replicated(standby)

    def fault(self, victim: str) -> float:
        return self.k.fault(victim)

    def failover(self, survivor: str, fault_wall: float, timeout: float = 20.0) -> dict:
        """From the survivor's notify log: takeover = keepalived entered MASTER (its hook
        started, after the VIPs were added and the gratuitous ARPs sent); ready = the hook
        (conntrackd -c commit, -f, -R, -B) finished."""
        deadline = time.monotonic() + timeout
        while True:
            tr = [x for x in self.k.transitions(survivor) if x[0] == "primary" and x[1] >= fault_wall]
            if (tr and tr[0][2] is not None) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if not tr:
            return {"takeover_ms": None, "ready_ms": None, "detection_ms": None}
        start, end = tr[0][1], tr[0][2]
        return {"detection_ms": None, "takeover_ms": round((start - fault_wall) * 1000, 1),
                "ready_ms": round((end - fault_wall) * 1000, 1) if end else None}

    def restore(self, victim: str) -> None:
        self.k.restore(victim)

    def transitions(self) -> dict:
        return {k: self.k.transitions(k)[-4:] for k in ("a", "b")}


# --- one failover round ----------------------------------------------------------------------------

def one_round(side, victim: str, survivor: str, args, tag: str) -> dict:
    t = side.t
    side.wait_roles(victim, survivor)
    load = SessionLoad(t.client, t.vip, SESSION_PORT, n=args.sessions, duration=args.seconds,
                       log_name=f"sessions-{tag}")
    opened = load.opened()
    prober = ConnectProber(t.client, t.vip, SESSION_PORT, every=PROBE_EVERY,
                           timeout=PROBE_TIMEOUT, duration=args.seconds, log_name=f"prober-{tag}")
    time.sleep(args.seconds / 3)
    replicated = side.replicated(survivor)
    fault_wall = side.fault(victim)
    fault_mono = time.monotonic() - (time.time() - fault_wall)   # the same instant
    res = load.result()
    first = prober.first_success_after(fault_mono)
    fo = side.failover(survivor, fault_wall)
    row = {
        "side": side.name, "killed": victim, "load": benchlib.load_average(),
        "sessions": res["sessions"], "opened": opened["opened"], "replicated": replicated,
        "probe_stall_ms": res["probe_max_pause_ms"], "max_stall_ms": res["max_pause_ms"],
        "p99_stall_ms": res["p99_pause_ms"], "lost": lost(res) - res["failed"],
        "reset": res["reset"], "stalled": res["stalled"], "corrupt": res["corrupt"],
        "failed": res["failed"],
        "new_connection_ms": round(first * 1000, 1) if first is not None else None,
        "prober_failures": sum(1 for a in prober.attempts()
                               if a["t"] >= fault_mono and not a["ok"]),
        **fo, "errors": res["errors"][:3], "transitions": side.transitions(),
    }
    side.restore(victim)
    return row


# --- CPU per Gbit --------------------------------------------------------------------------------

def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat's cpu line."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + f[4]                  # idle + iowait
    return sum(f) - idle, sum(f)


def busy_cores(seconds: float) -> float:
    b0, t0 = cpu_times()
    time.sleep(seconds)
    b1, t1 = cpu_times()
    return (b1 - b0) / (t1 - t0) * (os.cpu_count() or 1)


def cpu_per_gbit(side, seconds: float) -> dict:
    t = side.t
    b1 = t.backends[0]
    server = b1.ns.spawn(["iperf3", "-s", "-1", "--forceflush", "-p", str(IPERF_PORT)],
                         log_name=f"iperf3-server-{side.name}-{time.monotonic_ns()}")
    server.wait_output("Server listening", timeout=10)
    idle = busy_cores(min(seconds, 3.0))
    b0, t0 = cpu_times()
    w0 = time.monotonic()
    cp = t.client.run(["timeout", str(seconds + 15), "iperf3", "-c", t.vip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"],
                      timeout=seconds + 30, check=False)
    wall = time.monotonic() - w0
    b1_, t1 = cpu_times()
    server.stop()
    try:
        out = json.loads(cp.stdout)
        gbit = out["end"]["sum_received"]["bytes"] * 8 / 1e9
    except (json.JSONDecodeError, KeyError):
        return {"error": (cp.stdout + cp.stderr)[-500:]}
    cores = os.cpu_count() or 1
    busy_s = (b1_ - b0) / (t1 - t0) * cores * wall
    return {"gbit_per_s": round(gbit / wall, 2), "busy_cores": round(busy_s / wall, 2),
            "idle_busy_cores": round(idle, 2),
            "cpu_s_per_gbit": round(busy_s / gbit, 3) if gbit else None,
            "net_cpu_s_per_gbit": round((busy_s - idle * wall) / gbit, 3) if gbit else None}


# --- running a side and reporting ------------------------------------------------------------------

def run_side(make_side, args) -> dict:
    with Lab(prefix="tk") as lab:
        side = make_side(lab)
        t = side.t
        servers = {h.name: SessionEchoServer(h.ns, h.name, [SESSION_PORT],
                                             lifetime=args.rounds * (args.seconds + 60) + 300)
                   for h in t.backends}
        # CPU per Gbit first, through the first active before any failover: after a failover the Tandem
        # lab's bulk flow stalls (see the report), and both sides are then measured alike
        active = side.active()
        standby = "b" if active == "a" else "a"
        side.wait_roles(active, standby)
        cpu = cpu_per_gbit(side, args.iperf_seconds)
        print(f"  {side.name} CPU per Gbit: {cpu}", flush=True)
        rows = []
        for i in range(args.rounds):
            row = one_round(side, active, standby, args, f"{side.name}-{i + 1}")
            row["round"] = i + 1
            rows.append(row)
            print(f"  {side.name} round {i + 1}: kill {active}: " + ", ".join(
                f"{k} {row[k]}" for k in ("probe_stall_ms", "max_stall_ms", "lost", "reset",
                                          "stalled", "new_connection_ms", "takeover_ms",
                                          "ready_ms", "replicated", "load")), flush=True)
            active, standby = standby, active
        del servers
        return {"label": side.label, "rounds": rows, "cpu": cpu}


def summary(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    if len(v) == 1 or min(v) == max(v):
        return f"{v[0]:g}"
    return f"{statistics.median(v):g} ({min(v):g}–{max(v):g})"


def table(results: list[dict]) -> str:
    heads = [r["label"] for r in results]
    lines = ["| figure | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(heads)]

    def row(title, fn):
        lines.append(f"| {title} | " + " | ".join(fn(r) for r in results) + " |")

    def col(key):
        return lambda r: summary([x[key] for x in r["rounds"]])
    row("rounds", lambda r: str(len(r["rounds"])))
    row("client-seen stall: longest pause of a probe session (ms)", col("probe_stall_ms"))
    row("longest pause of any session (ms)", col("max_stall_ms"))
    row("p99 of the sessions' longest pause (ms)", col("p99_stall_ms"))
    row("sessions lost (reset / stalled / corrupt); never opened", lambda r:
        "{} of {} ({} / {} / {}); {}".format(*(sum(x[k] for x in r["rounds"]) for k in (
            "lost", "sessions", "reset", "stalled", "corrupt", "failed"))))
    row("first new connection after the fault (ms)", col("new_connection_ms"))
    row("takeover after the fault (ms)", col("takeover_ms"))
    row("replicated state usable after the fault (ms)", col("ready_ms"))
    row("flows the standby held before the fault", col("replicated"))
    row("iperf3 through the active (Gbit/s)", lambda r: str(r["cpu"].get("gbit_per_s")))
    row("whole-machine CPU s per Gbit (net of idle)", lambda r: "{} ({})".format(
        r["cpu"].get("cpu_s_per_gbit"), r["cpu"].get("net_cpu_s_per_gbit")))
    row("load average during the rounds", lambda r: " / ".join(x["load"].split()[0]
                                                               for x in r["rounds"]))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1000, help="long-lived sessions per round")
    ap.add_argument("--rounds", type=int, default=2, help="failovers per side / variant")
    ap.add_argument("--seconds", type=float, default=9.0,
                    help="session load per round (the fault a third into it)")
    ap.add_argument("--iperf-seconds", type=float, default=5.0, help="bulk transfer duration")
    ap.add_argument("--only", choices=("tandem", "kernel"), help="run one side only")
    ap.add_argument("--variants", default="ext-cache,no-ext-cache",
                    help=f"kernel variants, comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--advert-int", type=float, default=0.01,
                    help="keepalived advert_int (s); 0.01 is the least it accepts")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON ('-': stdout)")
    args = ap.parse_args()
    benchlib.require_root()
    install_signal_handlers()
    os.environ.setdefault("TANDEMD", str(benchlib.REPO / "build" / "controlplane" / "tandemd"))
    variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variants {bad}; known: {', '.join(VARIANTS)}")
    results = []
    print(f"load before: {benchlib.load_average()}; TANDEMD={os.environ['TANDEMD']}", flush=True)
    if args.only in (None, "tandem"):
        results.append(run_side(lambda lab: TandemSide(lab, args), args))
    if args.only in (None, "kernel"):
        for v in variants:
            s = kh.Settings(**{**VARIANTS[v].__dict__, "advert_int": args.advert_int})
            r = run_side(lambda lab, s=s: KernelSide(lab, args, s), args)
            r["variant"] = v
            results.append(r)
    print(f"\n{args.sessions} sessions per round, load after: {benchlib.load_average()}\n")
    print(table(results))
    if args.json:
        text = json.dumps({"args": vars(args), "results": results}, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
