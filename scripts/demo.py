#!/usr/bin/python3
"""Tandem in two minutes: kill -9 of the active unit, with and without state replication.

Builds the two-unit lab of tandemlab.ha.ha_lab (a client, units A and B on a north bridge, four
backends behind them on a south bridge, a sync link between the units) and opens a few hundred
long-lived sessions through the VIP to three of the backends. Then a scale-out: the fourth
backend is added to the service on both units, so Maglev now maps about a quarter of all flows to
it, while the open sessions stay on their backends (each unit's connection table says where they
go). Under new connections every 10 ms and short HTTP requests, the active unit is killed and
the report says what the clients saw: sessions kept, reset or stalled, bytes verified, the
longest stall, the first new connection after the kill, the survivor's detection and takeover
times and the sessions lost (RPO). Then the same with replication off, for contrast: the
survivor, without the sessions' entries, asks Maglev, sends a quarter of them to the new backend,
which knows nothing of them and resets them. (Without the scale-out it would have guessed right:
same configuration, same Maglev table; replication is what keeps sessions when the units' view
has changed since they began: backends added, drained, reweighted, failed.)

Needs root and a built tandemd (scripts/demo.sh does both). Ctrl-C or SIGTERM at any point still
removes everything. --json prints only the figures (tests/e2e/test_demo.py uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import tandemlab as tl  # noqa: E402
from tandemlab import ha as hal  # noqa: E402
from tandemlab.sessions import (ConnectProber, SessionEchoServer, SessionLoad,  # noqa: E402
                                cross_check)

LAB_PREFIX = "demo"                       # namespaces: demo<pid>-<tag>-<role>
SUBNET_N, SUBNET_S, SUBNET_SYNC = "10.199.200", "10.199.201", "10.199.202"
SESSION_PORT = 7100                       # VIP:7100 -> SessionEchoServer :7100 on the backends
BACKENDS, SCALE_OUT = 3, 4                # sessions start on b1-b3; b4 joins before the kill
# Dead after 10 adverts (100 ms) rather than 3: on a busy 2-core machine a 30 ms hiccup of a
# unit's HA thread would make a spurious failover in the middle of the demo.
HA = {"dead_intervals": 10}
PROBES = 20                               # sessions sending every 5 ms: the stall to the ms
SESSION_TIMEOUT = 5.0                     # a session with no echo for this long is "stalled"
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


class Narrator:
    """The demo's voice: numbered headings, indented text, dim shell commands, tables.
    Silent with --json."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.step = 0

    def heading(self, text: str) -> None:
        self.step += 1
        self._print(f"\n{BOLD}== {self.step}. {text} =={RESET}")

    def say(self, text: str = "") -> None:
        self._print(f"   {text}" if text else "")

    def para(self, text: str) -> None:
        """Prose, wrapped."""
        self._print(textwrap.fill(text, width=94, initial_indent="   ", subsequent_indent="   "))

    def shell(self, text: str) -> None:
        self._print(f"   {DIM}$ {text}{RESET}")

    def ctl(self, u: hal.HaUnit, *args: str, keep=lambda line: True) -> None:
        """Run `tandemctl ARGS` on a unit (its human output) and show the lines kept."""
        if self.quiet:
            return
        self.shell(f"ip netns exec {u.ns.name} tandemctl {' '.join(args)}")
        for line in u.ctl(*args, json_output=False).rstrip().splitlines():
            if line.strip() and keep(line):
                self.say(f"  {line}")

    def table(self, rows: list[list], header: list[str]) -> None:
        widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
        for r in [header] + rows:
            self.say("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())

    def _print(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


def ha_status_lines(line: str) -> bool:
    """Of `tandemctl ha status`: the unit line, group 1's row and the last takeover."""
    return line.startswith(("unit ", "ID ", "1 ", "last takeover"))


def sync_status_lines(line: str) -> bool:
    return line.startswith(("state sync", "enabled:", "peer:", "lag:", "applied:"))


# --- the lab ---------------------------------------------------------------------------------

def demo_lab(lab: tl.Lab, *, replicate: bool, driver: str) -> tuple[hal.HaLab, dict]:
    """ha_lab with four backends, web (VIP:80 -> :8080: the HTTP load) and sessions
    (VIP:7100 -> :7100), both nat on b1-b3, and a SessionEchoServer on every backend;
    [sync] enabled = false unless replicate. Returns (the lab, the session servers)."""
    vip = f"{SUBNET_N}.{hal.VIP_HOST}"
    web = next(s for s in hal.default_services(vip, SUBNET_S, BACKENDS) if s.name == "web")
    sessions = tl.ServiceConfig("sessions", vip, port=SESSION_PORT, mode="nat", group=1,
                                backends=[tl.BackendConfig(b.address, port=SESSION_PORT)
                                          for b in web.backends])
    t = hal.ha_lab(lab, subnet_n=SUBNET_N, subnet_s=SUBNET_S, subnet_sync=SUBNET_SYNC,
                   n_backends=SCALE_OUT, services=[web, sessions], ha=HA, driver=driver,
                   sync=None if replicate else {"enabled": False})
    servers = {h.name: SessionEchoServer(h.ns, h.name, [SESSION_PORT], lifetime=300)
               for h in t.backends}
    return t, servers


def show_topology(say: Narrator, t: hal.HaLab, driver: str) -> None:
    left = max(len(f"client {t.client_ip}"), len(f"VIP {t.vip}"))
    unit = "─ unit {}  north .{}  south .{} ─"     # the two units, one above the other
    a, b = unit.format("A", 2, 2), unit.format("B", 3, 3)
    first, last = t.backends[0], t.backends[-1]
    for line in (f"{'':<{left}}            ┌{a}┐",
                 f"{'client ' + t.client_ip:<{left}} ── north ──┤{'│ sync link':^{len(a)}}"
                 f"├── south ── backends {first.name}-{last.name}",
                 f"{'VIP ' + t.vip:<{left}}    bridge  └{b}┘   bridge    {first.ip}-"
                 f"{last.ip.rsplit('.', 1)[1]}"):
        say.say(line)
    say.say(f"(north {t.subnet_n}.0/24, south {t.subnet_s}.0/24, sync link "
            f"{t.subnet_sync}.0/30)")
    say.para(f"Each unit is tandemd (DPDK, {driver} ports) in its own namespace. The active "
             f"unit answers ARP for the VIP and holds the backends' gateway {t.floating_ip}; on "
             "failover both move to the other unit by gratuitous ARP. Services (nat, Maglev), "
             "on b1-b3 for now:")
    say.say(f"  web      {t.vip}:80   -> :8080  short HTTP requests")
    say.say(f"  sessions {t.vip}:{SESSION_PORT} -> :{SESSION_PORT}  long-lived sessions, "
            "checked byte by byte")


def start_lab(lab: tl.Lab, args, say: Narrator, *, replicate: bool,
              detail: bool) -> tuple[hal.HaLab, dict]:
    started = time.monotonic()
    t, servers = demo_lab(lab, replicate=replicate, driver=args.driver)
    say.say(f"both units up in {time.monotonic() - started:.1f}s; A started first, so A is "
            "active and B its standby" + (":" if detail else "."))
    if detail:
        for u in t.units.values():
            say.ctl(u, "ha", "status", keep=ha_status_lines)
    return t, servers


def midflow(u: hal.HaUnit) -> int:
    """Connections the unit adopted from a segment without SYN: it had no entry for them."""
    return int(u.ctl("counters", timeout=10)["handled"].get("lb_midflow_flows", 0))


def clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# --- one failover ----------------------------------------------------------------------------

class HttpLoad:
    """Short HTTP requests to the VIP, two at a time, for `seconds` (tl.http_burst in a thread;
    each request has 3 s: a SYN lost in the failover is retried by TCP after 1 s)."""

    def __init__(self, t: hal.HaLab, seconds: float):
        self.burst: tl.HttpBurst | None = None
        self.error: str | None = None
        self.seconds = seconds
        self.thread = threading.Thread(target=self._run, args=(t,), daemon=True)
        self.thread.start()

    def _run(self, t: hal.HaLab) -> None:
        try:        # at most ~1000 requests a second here: the budget ends it, not the count
            self.burst = tl.http_burst(t.client, t.vip, hal.WEB, 20000, threads=2, timeout=3.0,
                                       budget=self.seconds, tag="demo")
        except Exception as e:  # noqa: BLE001 - e.g. the lab removed under it by Ctrl-C
            self.error = f"{type(e).__name__}: {e}"

    def result(self) -> tl.HttpBurst | None:
        self.thread.join(timeout=self.seconds + 30)
        return self.burst


def open_sessions(t: hal.HaLab, args, say: Narrator, *, replicate: bool) -> tuple:
    """The sessions, open; with replication, wait until B holds every one of them."""
    if replicate:
        hal.wait_sync(t.b, lambda s: s.ready, "ready (bulk resync done)", timeout=5.0)
    probes = min(PROBES, args.sessions // 10)
    asked = time.monotonic()
    load = SessionLoad(t.client, t.vip, SESSION_PORT, n=args.sessions, probes=probes,
                       duration=args.seconds, timeout=SESSION_TIMEOUT,
                       log_name=f"sessions-{'on' if replicate else 'off'}")
    opened = load.opened()
    say.para(f"{opened['opened']} of {args.sessions} open after {opened['t'] - asked:.1f}s. "
             f"Each sends a message every 200 ms ({probes} of them every 5 ms, to time a stall "
             "closely) and checks its echo byte by byte; the backends check every message too. "
             "Per backend: " + ", ".join(f"{b} {n}" for b, n in
                                         sorted(opened["backends"].items())))
    if opened["failed"]:
        say.say(f"{opened.get('failed_count', len(opened['failed']))} failed to open, e.g. "
                f"{opened['failed'][0]}")
    if replicate:
        _, rows_b, took = hal.wait_tables_match(t, "a", "b", "--service", "sessions",
                                                timeout=5.0, minimum=opened["opened"])
        say.say(f"B's connection table holds all {len(rows_b)} (backend, TCP state) "
                f"{took * 1000:.0f} ms after they were open:")
    replicated = hal.conn_count(t.b, "--service", "sessions")
    if not replicate:
        say.say(f"B's connection table holds {replicated} of them:")
    say.ctl(t.b, "sync", "status", keep=sync_status_lines)
    sync = hal.sync_status(t.b)
    return load, opened, {"replicated_entries": replicated, "sync_lag_entries": sync.lag_entries,
                          "sync_lag_ms": sync.lag_ms}


def scale_out(t: hal.HaLab, say: Narrator, *, detail: bool) -> None:
    """The last backend joins the sessions service on A (tandemctl backend add); config sync
    pushes A's services to B (without state sync, the operator adds it on B too)."""
    new = t.backends[SCALE_OUT - 1]
    if detail:
        say.shell(f"ip netns exec {t.a.ns.name} tandemctl backend add --service sessions "
                  f"--address {new.ip} --port {SESSION_PORT}")
    pushed = hal.add_backend_to_pair(t, "sessions", new.ip, SESSION_PORT)
    if detail and pushed is not None:
        say.para(f"B has it too {pushed * 1000:.0f} ms later: config sync pushed A's newer "
                 "services to B, which applied them (`tandemctl sync status`: services match).")
    if detail:
        say.para(f"Maglev now maps about 1 in {SCALE_OUT} flows to {new.name}: new sessions go "
                 "there too. The open ones stay on their backends: a unit that has their "
                 "connection entries sends them where the entries say, whatever Maglev says now.")
    else:
        say.say(f"scale-out: {new.name} added to sessions on both units")


def kill_active(t: hal.HaLab, load: SessionLoad, opened: dict, args, say: Narrator, *,
                detail: bool) -> dict:
    """New connections and HTTP requests from now until the sessions end; kill -9 of A at 40%
    of the sessions' time (at least 1 s from now); what the clients and B saw."""
    load_start, load_end = opened["t"], opened["t"] + args.seconds
    window = max(2.0, load_end - time.monotonic())
    prober = ConnectProber(t.client, t.vip, SESSION_PORT, every=0.01, duration=window,
                           log_name=f"connect-{time.monotonic_ns()}")
    http = HttpLoad(t, window)
    time.sleep(max(1.0, load_start + 0.4 * args.seconds - time.monotonic()))

    adopted_before = midflow(t.b)
    killed_at, wall = time.monotonic(), time.time()
    t.a.kill()
    say.say(f"{BOLD}kill -9{RESET} of tandemd on A at {clock(wall)}, "
            f"{killed_at - load_start:.2f}s into the {args.seconds:g}s of session traffic")
    hal.wait_roles(t, {"b": "active"}, timeout=5.0, interval=0.01)
    say.say(f"B says it is active {(time.monotonic() - killed_at) * 1000:.0f} ms later "
            "(polled over its ctl socket)" + (":" if detail else ""))
    if detail:
        say.ctl(t.b, "ha", "status", keep=ha_status_lines)
    fo = hal.status(t.b).last_failover
    if not detail and fo:
        say.say(f"B's last takeover: {fo.cause}, detection {fo.detection_ms} ms, "
                f"takeover {fo.takeover_ms} ms")

    say.say(f"waiting for the sessions to end ({max(0.0, load_end - time.monotonic()):.1f}s) ...")
    res = load.result()
    burst = http.result()
    return {
        "killed_at_wall": round(wall, 3),
        "adopted_mid_flow": midflow(t.b) - adopted_before,
        "sessions_before": res["sessions"] - res["failed"],
        "kept": res["ok"],
        "reset": res["reset"],
        "stalled": res["stalled"],
        "corrupt": res["corrupt"],
        "failed_to_open": res["failed"],
        "messages": res["messages"],
        "bytes_verified": res["bytes_verified"],
        "max_stall_ms": res["max_pause_ms"],
        "first_new_connection_ms": ms(prober.first_success_after(killed_at)),
        "detection_ms": fo.detection_ms if fo else None,
        "takeover_ms": fo.takeover_ms if fo else None,
        "rpo_sessions_lost": res["sessions"] - res["failed"] - res["ok"],
        "http_ok": len(burst.ok) if burst else None,
        "http_failed": len(burst.failed) if burst else None,
        "killed_at_s": round(killed_at - load_start, 3),
        "session_errors": res["errors"][:3],
    }


def failover(lab: tl.Lab, args, say: Narrator, *, replicate: bool, detail: bool) -> dict:
    """One lab, its sessions, the scale-out, the kill: one column of the report."""
    t, servers = start_lab(lab, args, say, replicate=replicate, detail=detail)
    if detail:
        show_topology(say, t, args.driver)
        say.heading(f"{args.sessions} long-lived sessions through the VIP, replicated to B")
    load, opened, sync = open_sessions(t, args, say, replicate=replicate)
    if detail:
        say.heading(f"Scale-out while they run: {t.backends[SCALE_OUT - 1].name} joins the "
                    "sessions service")
    scale_out(t, say, detail=detail)
    if detail:
        say.heading("kill -9 of the active unit A, under load")
        say.para("Meanwhile: a new session every 10 ms, to time the first that works after the "
                 "kill, and short HTTP requests to web, two at a time.")
    figures = kill_active(t, load, opened, args, say, detail=detail)
    return {"replication": replicate, **figures, **sync,
            "backend_view_problems": cross_check(load.result(), servers)[:3]}


# --- the demo --------------------------------------------------------------------------------

def report(say: Narrator, on: dict, off: dict) -> None:
    def row(label: str, key: str) -> list:
        return [label] + ["n/a" if r.get(key) is None else f"{r[key]:,}" for r in (on, off)]
    say.table([
        row("sessions before the kill", "sessions_before"),
        row("  kept (every byte checked)", "kept"),
        row("  reset", "reset"),
        row(f"  stalled (no echo for {SESSION_TIMEOUT:g} s)", "stalled"),
        row("bytes verified", "bytes_verified"),
        row("longest client-seen stall (ms)", "max_stall_ms"),
        row("first new session after the kill (ms)", "first_new_connection_ms"),
        row("detection (ms)", "detection_ms"),
        row("takeover (ms)", "takeover_ms"),
        row("RPO: sessions lost", "rpo_sessions_lost"),
        row("connections B had no entry for", "adopted_mid_flow"),
        row("HTTP requests meanwhile: ok", "http_ok"),
        row("                         failed", "http_failed"),
    ], ["", "replication on", "replication off"])


def run_demo(args, say: Narrator) -> dict:
    labs: list[str] = []
    say.heading("Building the lab: a client, two units, four backends, a sync link")
    with tl.Lab(prefix=LAB_PREFIX) as lab:
        labs.append(lab.id)
        on = failover(lab, args, say, replicate=True, detail=True)
    say.heading("The same again with replication off ([sync] enabled = false)")
    with tl.Lab(prefix=LAB_PREFIX) as lab:
        labs.append(lab.id)
        off = failover(lab, args, say, replicate=False, detail=False)
    say.heading("Report: what the clients saw when A died")
    report(say, on, off)
    say.say()
    say.para("Detection and takeover are B's own figures (`tandemctl ha status`, last "
             "takeover); a stall is the longest round trip of one message, TCP's retransmission "
             "included. With replication B held every session's entry and sent each to its "
             "backend. Without, B saw the sessions' next segments with no entry, adopted them "
             f"and asked Maglev, which since the scale-out sends about 1 in {SCALE_OUT} of them "
             "to the new backend: it knows nothing of them and resets them. (Had nothing "
             "changed, Maglev on B would have guessed right: same configuration, same table.)")
    return {"labs": labs, "sessions": args.sessions, "seconds_of_traffic": args.seconds,
            "replication_on": on, "replication_off": off}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", choices=sorted(tl.DRIVERS), default="af_xdp",
                    help="DPDK port type on the units' veths (default af_xdp)")
    ap.add_argument("--tandemd", type=Path, default=None,
                    help="tandemd binary (default build/controlplane/tandemd or $TANDEMD)")
    ap.add_argument("--sessions", type=int, default=300,
                    help="long-lived sessions in each run (default 300)")
    ap.add_argument("--seconds", type=float, default=6.0,
                    help="seconds of session traffic in each run, the kill at 40%% (default 6)")
    ap.add_argument("--json", action="store_true", help="print only the figures, as JSON")
    args = ap.parse_args()
    if args.seconds < 2.5:
        ap.error("--seconds must be at least 2.5 (the kill comes 1 s after the load starts)")
    if args.tandemd:
        os.environ["TANDEMD"] = str(args.tandemd.resolve())
    if os.geteuid() != 0:
        print("demo: needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    binary = tl.default_binary()
    if not binary.exists():
        print(f"demo: {binary} not found; build first (scripts/demo.sh does)", file=sys.stderr)
        return 1

    tl.install_signal_handlers()          # SIGTERM/SIGHUP unwind like Ctrl-C does
    tl.cleanup_stale(prefix=LAB_PREFIX, verbose=False)
    say = Narrator(quiet=args.json)
    t0 = time.monotonic()
    try:
        results = run_demo(args, say)
    except KeyboardInterrupt:
        print("\ninterrupted: lab removed", file=sys.stderr)
        return 130
    except SystemExit as e:
        print("\nstopped by signal: lab removed", file=sys.stderr)
        return int(e.code or 1)
    except (tl.TandemdError, tl.CommandError, tl.CtlError, tl.TelemetryError,
            TimeoutError) as e:
        print(f"\ndemo failed: {e}\nlab removed", file=sys.stderr)
        return 1
    results["demo_seconds"] = round(time.monotonic() - t0, 1)
    say.heading("Cleaned up")
    say.say(f"namespaces, links and files removed; the demo took {results['demo_seconds']}s")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
