"""Stateful failover under load (issue 9): 1000 long-lived TCP sessions, a new-connection prober
and sha256-checked bulk transfers run through the VIP of two units while a fault moves the VIP
group from one unit to the other; every byte is verified and the outage measured.

Topology: tandemlab.ha.ha_lab (see tandemlab/ha.py): the client on the north bridge, units A
(active) and B (standby), backend namespaces on the south bridge, the sync veth between the
units; an HA dead interval of 100 ms (10 adverts) as in test_sync.py, so that a loaded 2-core
machine does not fail over on its own. Three services on the VIP, in the test's forwarding
mode: "sessions" (port 7100 -> tandemlab.sessions.SessionServer on every backend: greets,
echoes, checks every message), "probe" (7101, the same servers: new connections, kept out of
the sessions service's table) and "bulk" (9100 -> LbBackend hash servers).

The load (class Load), started once A's table is on B:
  - tandemlab.sessions.SessionLoad: 1000 sessions from one client process, each sending a
    numbered, crc32-checked message every 200 ms (20 of them every 5 ms: the probes that time
    the stall to the millisecond), every echoed byte compared in order; the servers check the
    messages too (cross_check: each session seen by the backend that greeted it, as one
    connection, with the bytes the client sent). Then a half-close and EOF.
  - tandemlab.sessions.ConnectProber: a new connection to the probe service (greeting read)
    every 10 ms.
  - bulk: tcp_hash_exchange() one after the other, 0.2 s apart (4 MiB each way, sha256 on
    both sides); the test injects its fault while one is in flight.

Faults, one test each (the figures go to SUMMARY, printed at the end with pytest -s):
  1. kill -9 of the active, in nat, fullnat and dsr (dsr: the client gets a second leg on the
     south bridge and the backends hold the VIP on lo, as topology.lb_lab builds it);
  2. the active's north and south links down (tracked: weight 0): B takes over by priority;
  3. graceful: `ha failover` on A, then `ha maintenance on` on B (A takes the group back);
  4. 5% loss (iptables statistic) on the sync link and relays adding 5 ms delay, jitter that
     reorders and 5% duplicates, during the load, then kill -9;
  5. a fourth backend added to the sessions service (on A; config sync takes it to B) just before the kill: B's
     Maglev table now sends some flows elsewhere (new connections reach b4), the replicated
     entries keep every session on its backend;
  6. failback, preempt on (A 200, B 100): kill -9 of A, A restarted comes back as standby,
     gets B's table by bulk resync and takes the group back;
  7. control: fault 5 with [sync] enabled = false loses exactly the sessions B sends to
     another backend than their own (B adopts every session mid-flow and picks by its Maglev
     table: mostly b4, a few moved between the old backends; that backend answers with a
     reset), which shows the test can fail. (Without a Maglev change, nat and dsr sessions
     survive a failover without state sync, see docs/performance.md.)

In 1-6: no session reset, stalled (no echo for STALL_S = 10 s) or corrupt, every byte verified
on both ends, every bulk exchange intact and one in flight across each fault, new connections
succeed after the fault, the new active adopted no session mid-flow (it had them all: its
sessions service created no connection). Timings are reported, not asserted (a shared 2-core
machine: when the units' workers wait for a CPU their AF_XDP rings overflow, ring_drops() in
the report, and TCP's retransmission backoff turns a few lost segments into seconds of pause).

Per event the report line gives: mode, fault, sessions ok/total, bytes verified, detection and
takeover (the new active's `ha status` last_failover), the client-seen stall (the longest pause
of a message queued around the event; probes included), the longest pause of the run and of the
probes, the first new connection after the event, RPO (sessions lost), the bulk exchanges, the
sessions adopted mid-flow, the AF_XDP ring drops of the units still running.

    TANDEMD=... python3 -m pytest tests/e2e/test_failover.py -s    # ~2.5 min; the table at the end
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from dataclasses import dataclass, field

import pytest

import tandemlab as tl
from tandemlab import ha as hal
from tandemlab import sessions as ss
from test_sync import HA, handled, wait_ready

_ranges = itertools.count()
SESSIONS, PROBES = 1000, 20
SESSION_PORT, PROBE_PORT, BULK_PORT = ss.SESSION_PORT, ss.SESSION_PORT + 1, 9100
LOAD_S = 8.0                 # s of load per test (tests with two events: longer)
FAULT_AT = 2.5               # s into the load
# A session whose echo is this late is "stalled". Generous: on a loaded 2-core machine the
# units' AF_XDP rings overflow now and then (their workers wait for a CPU; ring_drops() counts
# it) and TCP's retransmission backoff after a few consecutive losses reaches seconds.
STALL_S = 10.0
BULK_SIZE = 4 << 20
BULK_REST = 0.2              # s between two exchanges (each saturates the path while it runs)
REPLICATED_BOUND = 5.0       # s for B to hold every session (LOSSY: through a lossy link)
LOSSY_BOUND = 10.0
MODES = ["nat", "fullnat", "dsr"]
SUMMARY: list[dict] = []


@pytest.fixture
def nets():
    base = 130 + 3 * (next(_ranges) % 10)
    return {"subnet_n": f"10.199.{base}", "subnet_s": f"10.199.{base + 1}",
            "subnet_sync": f"10.199.{base + 2}"}


@pytest.fixture(scope="module", autouse=True)
def summary():
    """Prints every report line of the module at its end (pytest -s), as a markdown table
    for docs/performance.md; FAILOVER_SUMMARY_JSON=path also writes them as JSON."""
    yield
    if not SUMMARY:
        return
    print("\n\nfailover under load (test_failover.py):\n" + summary_table(SUMMARY))
    if os.environ.get("FAILOVER_SUMMARY_JSON"):
        with open(os.environ["FAILOVER_SUMMARY_JSON"], "w") as f:
            json.dump(SUMMARY, f, indent=1)


# --- the lab -----------------------------------------------------------------------------------

def failover_lab(lab, nets, mode: str = "nat", *, n_backends: int = 3, pool: int = 3,
                 **ha_lab_kw) -> tuple[hal.HaLab, dict[str, ss.SessionServer]]:
    """ha_lab with the sessions, probe and bulk services in `mode` over the first `pool` of
    `n_backends` backends, each running a SessionServer (sessions and probe) and a hash server
    (bulk); HA dead after 100 ms (test_sync.HA). fullnat: the local
    address S.6 floats with group 1; dsr: direct_return(). ha_lab_kw go to ha_lab (ha= over
    HA, sync=, track=, ...). Returns (the lab, {backend name: its SessionServer})."""
    n_s, s = nets["subnet_n"], nets["subnet_s"]
    vip = f"{n_s}.{hal.VIP_HOST}"
    hosts = [f"{s}.{20 + i}" for i in range(1, pool + 1)]
    svc_kw: dict = {}
    if mode == "fullnat":
        local = f"{s}.6"
        svc_kw["local_addresses"] = [local]
        ha_lab_kw["groups"] = [tl.HaGroup(1, floating_addresses=[
            tl.FloatingAddress("south0", f"{s}.{hal.FLOATING_HOST}/24"),
            tl.FloatingAddress("south0", f"{local}/24")])]
    services = [tl.ServiceConfig(name, vip, port=port, mode=mode, group=1,
                                 backends=[tl.BackendConfig(h, port=port) for h in hosts],
                                 **svc_kw)
                for name, port in (("sessions", SESSION_PORT), ("probe", PROBE_PORT),
                                   ("bulk", BULK_PORT))]
    ha_lab_kw["ha"] = {**HA, **ha_lab_kw.get("ha", {})}
    t = hal.ha_lab(lab, services=services, servers=False, n_backends=n_backends, **ha_lab_kw,
                   **nets)
    if mode == "dsr":
        direct_return(t)
    servers = {h.name: ss.SessionServer(h.ns, h.name, [SESSION_PORT, PROBE_PORT], lifetime=180)
               for h in t.backends}
    for h in t.backends:
        tl.LbBackend(h.ns, f"bulk-{h.name}", hash=[BULK_PORT], lifetime=180,
                     log_name=f"bulk-{h.name}")
    return t, servers


def direct_return(t: hal.HaLab) -> None:
    """dsr in the two-unit lab, as topology.lb_lab does it for one unit: the client gets a
    second leg S.100 on the south bridge (rp_filter off: answers come in there), every backend
    holds the VIP on lo (arp_ignore/arp_announce: it never answers ARP for it) and routes the
    client's subnet via S.100, so replies bypass the units."""
    lab = t.lab
    leg, sw = lab.veth(t.client, t.south_switch, lab.ifname("cld"), lab.ifname("swd"))
    lab.attach(t.south_switch, sw, lab.ifname("brs"))
    leg_ip = f"{t.subnet_s}.100"
    lab.addr(t.client, leg, f"{leg_ip}/24")
    for key in ("all", "default", t.client_if, leg):
        t.client.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0"])
    for h in t.backends:
        lab.addr(h.ns, "lo", f"{t.vip}/32")
        for key in ("all", h.ifname):
            h.ns.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.arp_ignore=1"])
            h.ns.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.arp_announce=2"])
        h.ns.ip("route", "add", f"{t.subnet_n}.0/24", "via", leg_ip)


# --- the load ------------------------------------------------------------------------------------

class BulkLoop:
    """tcp_hash_exchange() from the client to VIP:BULK_PORT, one after the other (BULK_REST s
    apart), in a thread, until stop() (at most `budget` s and 200 exchanges); each run:
    {"seed", "start", "end", "ok", "error"}; in_flight(): since when the current one runs
    (None between two)."""

    def __init__(self, t: hal.HaLab, size: int = BULK_SIZE, budget: float = 60.0):
        self.t, self.size, self.budget = t, size, budget
        self.runs: list[dict] = []
        self.current: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.budget
        for seed in range(1, 201):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            start = self.current = time.monotonic()
            try:
                r = tl.tcp_hash_exchange(self.t.client, self.t.vip, BULK_PORT, self.size,
                                         seed=seed, timeout=20.0)
                want = tl.expected_sha256(self.size, seed)
                ok = (r["sent_sha256"] == r["server_sha256"] == r["echo_sha256"] == want
                      and r["echo_len"] == self.size)
                error = None if ok else f"sha256 or length differ: {r}"
            except Exception as e:  # noqa: BLE001 - recorded, asserted on by the test
                text = f"{type(e).__name__}: {e}"
                ok, error = False, text if len(text) < 600 else f"{text[:150]} ... {text[-400:]}"
            self.current = None
            self.runs.append({"seed": seed, "start": start, "end": time.monotonic(), "ok": ok,
                              "error": error})
            self._stop.wait(BULK_REST)

    def in_flight(self) -> float | None:
        return self.current

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(timeout=40)
        return self.runs


class Load:
    """The sessions, the prober and the bulk loop (module docstring). Construct once the lab is
    ready: waits until every session is open (asserting none failed) and, with replicate_to,
    until that unit holds all of them; then starts the prober (on its own service, so that the
    sessions service's tables hold the sessions only) and the bulk loop."""

    def __init__(self, t: hal.HaLab, duration: float = LOAD_S, *, replicate_to: str | None = "b",
                 bound: float = REPLICATED_BOUND):
        self.t = t
        self.sessions = ss.SessionLoad(t.client, t.vip, SESSION_PORT, n=SESSIONS, probes=PROBES,
                                       duration=duration, timeout=STALL_S, log_name="sessions")
        self.opened = self.sessions.opened()
        assert self.opened["opened"] == SESSIONS, self.opened
        self.start = self.opened["t"]          # the load's start (time.monotonic())
        self.replicated_s = None
        if replicate_to:
            self.replicated_s = replicated(t, "b" if replicate_to == "a" else "a", replicate_to,
                                           bound)
        self.prober = ss.ConnectProber(t.client, t.vip, PROBE_PORT, every=0.01, timeout=0.5,
                                       duration=duration, log_name="prober")
        self.bulk = BulkLoop(t)
        self.result: dict | None = None
        self.bulk_runs: list[dict] = []
        self.ring_drops: dict[str, int] = {}

    def at(self, seconds: float) -> float:
        """Sleep until `seconds` into the load, then until a bulk exchange has been running for
        0.1 s (at most 3 s more), so that one is in flight across what follows; returns
        time.monotonic()."""
        time.sleep(max(0.0, self.start + seconds - time.monotonic()))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            began = self.bulk.in_flight()
            if began is not None and time.monotonic() - began >= 0.1:
                break
            time.sleep(0.01)
        return time.monotonic()

    def finish(self) -> dict:
        self.result = self.sessions.result()
        self.bulk_runs = self.bulk.stop()
        self.prober.attempts()
        time.sleep(0.3)             # the units publish their counters every 200 ms
        self.ring_drops = {k: ring_drops(u) for k, u in self.t.units.items() if u.running()}
        return self.result


def replicated(t: hal.HaLab, src: str = "a", dst: str = "b", bound: float = REPLICATED_BOUND,
               ) -> float:
    """Wait until dst's sessions connections are src's (all SESSIONS); returns the seconds."""
    return hal.wait_tables_match(t, src, dst, "--service", "sessions", timeout=bound,
                                 minimum=SESSIONS, interval=0.05)[2]


def service_created(u: hal.HaUnit, service: str = "sessions") -> int:
    """Connections the unit created for a service since its start (replicas installed by sync
    included): after a takeover, what it adopts mid-flow."""
    for svc in u.ctl("services", "list", timeout=10)["services"]:
        if svc["name"] == service:
            return sum(int(b.get("connections", 0)) for b in svc["backends"])
    raise LookupError(service)


def ring_drops(u: hal.HaUnit) -> int:
    """Frames the unit's XDP program steered to its AF_XDP sockets that tandemd never received
    (the rings were full: the worker did not get the CPU in time), both ports, since its start.
    Only meaningful once traffic has stopped (rx_packets is published every 200 ms, the XDP
    counters at once); 0 if it is not running."""
    if not u.running():
        return 0
    out = 0
    for p in u.unit.counters().get("ports", []):
        steered = sum(v for k, v in p.get("xdp", {}).items() if k.startswith("steered"))
        out += max(0, steered - int(p.get("rx_packets", 0)))
    return out


# --- the report ----------------------------------------------------------------------------------

@dataclass
class Event:
    """One fault (or handover) during a load, and what the report says about it."""
    fault: str
    new_active: str                 # "a" | "b"
    at: float = 0.0                 # time.monotonic() when it was injected
    injected: float = 0.0           # when the injection was done (kill -9: the unit reaped)
    failover: dict = field(default_factory=dict)
    created_before: int = 0         # the new active's sessions connections created, before
    midflow_before: int = 0         # its lb_midflow_flows, before
    adopted: int | None = None      # sessions the new active adopted mid-flow
    midflow: int | None = None      # every connection it adopted mid-flow (prober's included)
    timed: bool = True              # injected by the test (when a bulk exchange was running)


def last_failover(u: hal.HaUnit, since_unix_ms: float) -> dict:
    """The unit's last_failover once it is one from after since_unix_ms (it is written when
    the takeover is complete); {} if none came within 2 s."""
    def fresh():
        fo = hal.status(u).last_failover
        return fo.raw if fo and (fo.raw.get("unix_ms") or 0) >= since_unix_ms - 5 else None
    try:
        return tl.wait_until(fresh, timeout=2.0, interval=0.02, what=f"{u.name}'s last_failover")
    except TimeoutError:
        return {}


def take_over(t: hal.HaLab, ev: Event, fault, load: "Load | None" = None, timeout: float = 3.0) -> Event:
    """Note the new active's counters, (with `load`: wait again for a bulk exchange in flight,
    since reading the counters took a while), inject `fault` (a callable; ev.at is set just
    before), wait until ev.new_active is active and read its last_failover."""
    u = t.unit(ev.new_active)
    ev.created_before = service_created(u)
    ev.midflow_before = handled(u).get("lb_midflow_flows", 0)
    if load is not None:
        load.at(0.0)
    wall_ms = time.time() * 1000
    ev.at = time.monotonic()
    fault()
    ev.injected = time.monotonic()
    hal.wait_roles(t, {ev.new_active: "active"}, timeout=timeout, interval=0.01)
    ev.failover = last_failover(u, wall_ms)
    return ev


def count_adopted(t: hal.HaLab, ev: Event) -> int:
    """Sessions (and all connections) the new active adopted mid-flow since take_over()."""
    u = t.unit(ev.new_active)
    ev.adopted = service_created(u) - ev.created_before
    ev.midflow = handled(u).get("lb_midflow_flows", 0) - ev.midflow_before
    return ev.adopted


def first_new_ms(load: Load, ev: Event) -> float | None:
    """ms from the fault to the end of the first new connection that succeeded among those
    begun once the injection was done (one begun earlier may have been answered by the old
    active before it died)."""
    s = load.prober.first_success_after(ev.injected or ev.at)
    return None if s is None else round(((ev.injected or ev.at) - ev.at + s) * 1000, 1)


def report(mode: str, load: Load, ev: Event) -> dict:
    """The report line of one event (printed and added to SUMMARY)."""
    res = load.result
    assert res is not None
    runs = load.bulk_runs
    first = first_new_ms(load, ev)
    row = {
        "mode": mode, "fault": ev.fault, "ok": res["ok"], "sessions": res["sessions"],
        "bytes_verified": res["bytes_verified"], "messages": res["messages"],
        "cause": ev.failover.get("cause"), "detection_ms": ev.failover.get("detection_ms"),
        "takeover_ms": ev.failover.get("takeover_ms"),
        "stall_ms": ss.pause_between(res, ev.at - 1.0, ev.at + 3.0),
        "max_pause_ms": res["max_pause_ms"], "probe_max_pause_ms": res["probe_max_pause_ms"],
        "p99_pause_ms": res["p99_pause_ms"],
        "first_new_ms": first, "new_failed": len(load.prober.failed_between(ev.at, ev.at + 3.0)),
        "rpo": ss.lost(res), "adopted": ev.adopted, "midflow": ev.midflow,
        "bulk_ok": sum(1 for r in runs if r["ok"]), "bulk_runs": len(runs),
        "bulk_bytes": 2 * BULK_SIZE * sum(1 for r in runs if r["ok"]),
        "bulk_across": bulk_across(load, ev),
        "bulk_errors": [r["error"] for r in runs if not r["ok"]][:3],
        "ring_drops": load.ring_drops,
    }
    print(f"\n[{mode}] {ev.fault}: sessions {row['ok']}/{row['sessions']} ok, "
          f"{row['bytes_verified']} bytes verified ({row['messages']} messages); "
          f"{row['cause']}: detection {row['detection_ms']} ms, takeover {row['takeover_ms']} ms; "
          f"client-seen stall {row['stall_ms']} ms (run: longest pause {row['max_pause_ms']} ms, "
          f"probes {row['probe_max_pause_ms']} ms, p99 {row['p99_pause_ms']} ms); first new "
          f"connection {first} ms after the fault ({row['new_failed']} attempts failed); "
          f"RPO {row['rpo']} sessions; bulk {row['bulk_ok']}/{row['bulk_runs']} exchanges ok "
          f"({row['bulk_bytes'] >> 20} MiB, one across the fault: {row['bulk_across']}); "
          f"adopted mid-flow: {row['adopted']} sessions "
          f"({row['midflow']} connections in all); AF_XDP ring drops {row['ring_drops']}")
    SUMMARY.append(row)
    return row


def summary_table(rows: list[dict]) -> str:
    cols = ("mode", "fault", "sessions ok", "bytes verified", "detection ms", "takeover ms",
            "client-seen stall ms", "longest pause ms (probes)", "first new conn ms", "RPO",
            "bulk ok")
    out = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    rows = [{k: ("-" if v is None else v) for k, v in r.items()} for r in rows]
    for r in rows:
        out.append(f"| {r['mode']} | {r['fault']} | {r['ok']}/{r['sessions']} | "
                   f"{r['bytes_verified']} | {r['detection_ms']} | {r['takeover_ms']} | "
                   f"{r['stall_ms']} | {r['max_pause_ms']} ({r['probe_max_pause_ms']}) | "
                   f"{r['first_new_ms']} | {r['rpo']} | {r['bulk_ok']}/{r['bulk_runs']} |")
    return "\n".join(out)


# --- the checks ----------------------------------------------------------------------------------

def assert_nothing_lost(load: Load, servers: dict[str, ss.SessionServer],
                        events: list[Event]) -> None:
    """Faults 1-6: every session ok (none reset, stalled, corrupt or failed), both ends agree on
    every byte, every bulk exchange intact and one in flight across each event, new
    connections after each event, and the new active adopted no session mid-flow."""
    res = load.result
    assert res is not None
    assert ss.lost(res) == 0, f"{ss.report_line(res)}; first errors: {res['errors'][:10]}"
    assert res["bytes_verified"] > 0 and res["messages"] >= SESSIONS, res
    problems = ss.cross_check(res, servers)
    assert not problems, problems
    bad = [r for r in load.bulk_runs if not r["ok"]]
    assert not bad, bad
    for ev in events:
        assert not ev.timed or bulk_across(load, ev), \
            (ev.fault, ev.at, [(r["start"], r["end"]) for r in load.bulk_runs])
        assert first_new_ms(load, ev) is not None, \
            (ev.fault, load.prober.attempts()[-5:])
        assert ev.adopted == 0, f"{ev.fault}: the new active adopted {ev.adopted} sessions"


def bulk_across(load: Load, ev: Event) -> bool:
    return any(r["start"] <= ev.at <= r["end"] for r in load.bulk_runs)


def one_fault(t: hal.HaLab, servers, mode: str, fault: str, inject, *, new_active: str = "b",
              bound: float = REPLICATED_BOUND) -> tuple[Load, Event]:
    """The common course: B holds A's table, the load, the fault FAULT_AT s into it, the new
    active, the end of the load, the report; every check of assert_nothing_lost."""
    wait_ready(t, timeout=bound)
    load = Load(t, bound=bound)
    load.at(FAULT_AT)
    ev = take_over(t, Event(fault, new_active), inject, load)
    load.finish()
    count_adopted(t, ev)
    report(mode, load, ev)
    assert_nothing_lost(load, servers, [ev])
    return load, ev


# --- 1. kill -9 of the active, in every mode ------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_kill_active(lab, nets, mode):
    t, servers = failover_lab(lab, nets, mode)
    one_fault(t, servers, mode, "kill -9 of the active", t.a.kill)


# --- 2. the active's links cut --------------------------------------------------------------------

def test_links_of_the_active_cut(lab, nets):
    """Both data links of A down (`ip link set down` on A's ends): A's tracked links fail, it
    advertises priority 0 over the sync link, which still works, and B takes the group."""
    t, servers = failover_lab(lab, nets, track=[tl.HaTrack(link="north0"),
                                                tl.HaTrack(link="south0")])

    def cut():
        t.a.link_down("north")
        t.a.link_down("south")
    _, ev = one_fault(t, servers, "nat", "north and south links of the active down", cut)
    assert ev.failover.get("cause") != "peer_dead", ev.failover


# --- 3. graceful handover, then maintenance -------------------------------------------------------

def drops(u: hal.HaUnit) -> dict[str, int]:
    return u.ctl("counters", timeout=10)["drops"]


def test_graceful_failover_then_maintenance(lab, nets):
    """`ha failover` on A hands the group to B; once A (standby) holds B's table again,
    `ha maintenance on` on B gives it back to A. One load across both. What reaches a unit for
    the group after it gave it up (before the neighbours followed the new active) is forwarded
    by its entries when it belongs to a session (printed)."""
    t, servers = failover_lab(lab, nets)
    wait_ready(t)
    load = Load(t, LOAD_S + 3.0)
    load.at(FAULT_AT)
    ev1 = take_over(t, Event("ha failover (graceful), A to B", "b"),
                    lambda: t.a.ctl("ha", "failover"), load)
    back = replicated(t, "b", "a")
    load.at(FAULT_AT + 3.5)
    count_adopted(t, ev1)
    ev2 = take_over(t, Event("ha maintenance on, B to A", "a"),
                    lambda: t.b.ctl("ha", "maintenance", "on"), load)
    load.finish()
    count_adopted(t, ev2)
    # What each unit still received for the group after giving it up: forwarded (its flows'
    # entries); only new connections (the prober's SYNs) are dropped as not active.
    after = {k: (handled(u).get("lb_released_forwarded", 0), drops(u).get("lb_not_active", 0))
             for k, u in t.units.items()}
    print(f"\nA held B's table {back * 1000:.0f} ms after the handover; after giving the group up "
          f"(forwarded as released, dropped as not active): {after}")
    for ev in (ev1, ev2):
        report("nat", load, ev)
    assert hal.status(t.b).maintenance(), hal.status(t.b).raw
    assert_nothing_lost(load, servers, [ev1, ev2])


# --- 4. a lossy, slow, reordering, duplicating sync link, then kill -9 ----------------------------

def test_impaired_sync_link_then_kill(lab, nets):
    """During the whole load the sync messages cross relays (5 ms delay, up to 5 ms jitter
    that reorders, 5% duplicates) and lose 5% in each direction (iptables statistic in A's
    namespace); B holds every session all the same, and the kill -9 loses none."""
    t, servers = failover_lab(lab, nets, **hal.sync_peer_via_relay(nets["subnet_sync"]))
    relays = hal.sync_relays(t, delay_ms=5, jitter_ms=5, duplicate=0.05, lifetime=180)
    loss = hal.sync_loss(t, "a", 0.05)
    one_fault(t, servers, "nat", "kill -9 after 5% loss, delay, reordering, duplicates on sync",
              t.a.kill, bound=LOSSY_BOUND)
    sb = hal.sync_status(t.b)
    stats = {k: {n: r.stats().get(n) for n in ("received", "dropped", "duplicated", "reordered")}
             for k, r in relays.items()}
    dropped = [f.packets() for f in loss]
    print(f"B's sync receive {sb.raw.get('receive')}; relays {stats}; iptables dropped "
          f"{dropped} (A's output, input)")
    assert sb.receive("duplicates") > 0 and sb.receive("out_of_order") > 0, sb.raw
    assert all(n > 0 for n in dropped), dropped


# --- 5 and 7. a backend added just before the kill: with state sync, and without ------------------

def backend_added_then_kill(lab, nets, sync: bool):
    """Four backend hosts, the sessions and probe services over three; b4 is added to both on
    both units (on A, pushed to B by config sync; without state sync on each) 0.5 s before A is
    killed. Returns (t, servers, load, ev, {client
    port: backend} of B's sessions connections, as read 3 s after the kill and at the end)."""
    t, servers = failover_lab(lab, nets, n_backends=4, pool=3,
                              sync=None if sync else {"enabled": False})
    if sync:
        wait_ready(t)
    load = Load(t, replicate_to="b" if sync else None)
    assert set(load.opened["backends"]) == {"b1", "b2", "b3"}, load.opened["backends"]
    load.at(FAULT_AT - 0.5)
    b4 = t.backend("b4")
    for svc in ("sessions", "probe"):   # on A; with state sync, config sync takes it to B
        hal.add_backend_to_pair(t, svc, b4.ip)
    load.at(FAULT_AT)
    fault = "kill -9 just after a backend was added" + ("" if sync else " (no state sync)")
    ev = take_over(t, Event(fault, "b"), t.a.kill, load)
    # Read twice: a session whose retransmissions were lost reaches B late; a reset one's
    # entry (state close) expires 10 s after the reset.
    time.sleep(max(0.0, ev.at + 3.0 - time.monotonic()))
    rows = hal.connections(t.b, "--service", "sessions")
    load.finish()
    rows += hal.connections(t.b, "--service", "sessions")
    count_adopted(t, ev)
    report("nat", load, ev)
    backend_of = {int(r["client"].rpartition(":")[2]): r["backend"].rpartition(":")[0]
                  for r in rows if r["client"].startswith(t.client_ip + ":")}
    return t, servers, load, ev, backend_of


def test_backend_added_before_kill(lab, nets):
    """Fault 5: B's Maglev table sends some new flows to b4 (the prober's connections after
    the kill reach it), yet every session stays on its backend through B's replicated entries."""
    t, servers, load, ev, _ = backend_added_then_kill(lab, nets, sync=True)
    assert_nothing_lost(load, servers, [ev])
    after = [a for a in load.prober.attempts() if a["t"] > ev.at and a["ok"]]
    assert any(a["backend"] == "b4" for a in after), {a["backend"] for a in after}


def test_control_without_state_sync_loses_sessions(lab, nets):
    """Fault 7, the control: the same with [sync] enabled = false. B has no entry, adopts every
    session mid-flow and picks by its own Maglev table: the sessions it sends to another
    backend than the one that greeted them (mostly b4; adding a backend also moves a few slots
    between the old ones) are reset by that backend, which has no such connection; exactly
    those are lost, the others go on, byte for byte."""
    t, servers, load, ev, backend_of = backend_added_then_kill(lab, nets, sync=False)
    res = load.result
    greeted = {port: t.backend(name).ip for _, name, _, _, _, port in res["detail"]}
    moved = {port for port, backend in backend_of.items() if backend != greeted.get(port)}
    to_b4 = {port for port in moved if backend_of[port] == t.backend("b4").ip}
    lost_ports = {port for *_, state, _, _, port in res["detail"] if state != ss.OK}
    print(f"without state sync: {len(lost_ports)} sessions lost "
          f"({ {k: res[k] for k in ss.END_STATES} }); B sent {len(moved)} to another backend "
          f"than their own, {len(to_b4)} of them to b4; bulk exchanges that failed: "
          f"{[r['error'] for r in load.bulk_runs if not r['ok']]}")
    assert ev.adopted == SESSIONS, f"B adopted {ev.adopted} sessions mid-flow, not all"
    assert to_b4, "B's Maglev table sent no session to b4: the control proves nothing"
    assert res[ss.STALLED] == 0 and res[ss.CORRUPT] == 0 and res[ss.FAILED] == 0, res["errors"]
    assert lost_ports == moved, (sorted(lost_ports - moved)[:10], sorted(moved - lost_ports)[:10])
    assert set(backend_of) >= set(greeted), "B did not adopt every session"
    assert res[ss.RESET] == len(moved), res["errors"][:5]
    assert {e["kind"] for e in res["errors"]} == {ss.RESET}, res["errors"][:5]
    assert not ss.cross_check(res, servers)


# --- 6. failback with preemption ------------------------------------------------------------------

def test_failback_with_preemption(lab, nets):
    """Preempt on, A 200, B 100: kill -9 of A (B takes over), A restarted comes back as
    standby, gets B's table by bulk resync, and after its hold-down takes the group back
    ("preempt"); no session lost across either handover."""
    t, servers = failover_lab(lab, nets, ha={"preempt": True}, ha_a={"priority": 200},
                              ha_b={"priority": 100})
    wait_ready(t)
    load = Load(t, LOAD_S + 5.0)
    load.at(FAULT_AT)
    ev1 = take_over(t, Event("kill -9 of the active (preempt on)", "b"), t.a.kill, load)
    count_adopted(t, ev1)
    # A takes the group when its hold-down ends, not when the test says: no bulk exchange is
    # waited for (the kill had one across it).
    ev2 = Event("failback: A restarted, resynced, preempts", "a", timed=False)
    wall_ms = time.time() * 1000
    t0 = time.monotonic()
    t.a.start()
    started = time.monotonic()
    sa = hal.wait_sync(t.a, lambda s: s.ready and s.resync("completed") >= 1,
                       "bulk resync from B completed", timeout=5.0, interval=0.01)
    resynced = time.monotonic()
    # A holds B's sessions (replicas count as created): what it creates from now on it adopts.
    assert hal.role(t.a) == "standby", "A preempted before its resync was done"
    ev2.created_before = service_created(t.a)
    ev2.midflow_before = handled(t.a).get("lb_midflow_flows", 0)
    hal.wait_roles(t, {"a": "active", "b": "standby"}, timeout=5.0, interval=0.01)
    ev2.failover = last_failover(t.a, wall_ms)
    # The preemption's moment, on this host's monotonic clock, from A's own unix_ms.
    ev2.at = time.monotonic() - (time.time() * 1000 - ev2.failover.get("unix_ms", wall_ms)) / 1000
    load.finish()
    count_adopted(t, ev2)
    print(f"\nA restarted in {(started - t0) * 1000:.0f} ms, resynced "
          f"{(resynced - started) * 1000:.0f} ms later ({sa.resync('received_entries')} "
          f"entries), active again {(ev2.at - resynced) * 1000:.0f} ms after that")
    for ev in (ev1, ev2):
        report("nat", load, ev)
    assert "preempt" in hal.status(t.a).causes(), hal.status(t.a).raw
    assert_nothing_lost(load, servers, [ev1, ev2])
