"""End-to-end tests of connection-state sync (issue 8): the active unit replicates its connection
table to the standby over the sync link ([sync], UDP next to the HA adverts: port 8694 here).

Topology: tandemlab.ha_lab (see tandemlab/ha.py and test_ha.py): a client, two units (A active,
B standby) on a north bridge, three backends (LbBackend: HTTP 80/8080, echo 7000) behind the
floating gateway on a south bridge, and the sync veth between the units. Services: web
(VIP:80 -> :8080) and echo (VIP:7000 -> :7000), nat.

  - the standby's table is the active's: long-lived echo connections, UDP flows (a udp
    service) and short HTTP connections (ending closed) are on B with the same client, VIP,
    backend, mode and TCP state, and carry no traffic there; how long B took after A's table was
    steady is printed (pytest -s), and 8 new connections, one at a time, are timed from the
    client's connect() to their established entry on A and on B (polled over the ctl socket,
    ~1 ms resolution); `sync status` of both (addresses, epochs, peer heard, B ready, services
    digests equal) and their /metrics;
  - [sync] enabled = false: nothing is replicated;
  - ends: closed connections expire on both units (1 s timeouts); a flush on A deletes the
    entries on B, and A's mid-flow re-adoptions are replicated again;
  - 5% random loss on the sync link in both directions (iptables statistic in A's namespace),
    refresh_ms 250: the tables converge all the same, retransmissions counted, the busy
    connections refreshed about every refresh_ms;
  - 5 ms delay, up to 10 ms jitter (reordering) and 5% duplication in both directions
    (tandemlab.udp_relay; each unit's [sync] peer is a relay in its own namespace): the tables
    converge, the receiver counts duplicates and out-of-order messages;
  - the standby killed and restarted while 100 long-lived connections carry traffic: it asks
    for a bulk resync, completes it (ready), and its table is the active's again;
  - a wrong [sync] key on B: nothing applied, B's table empty, bad_auth growing, alarm raised,
    HA itself (its own key) unaffected;
  - kill -9 of the active once B holds the replicated entries, nat and fullnat: 30 long-lived
    echo connections keep every byte through B (fullnat: the backends see the same local
    address and port throughout), and B adopts none of them mid-flow (they found their
    entries); A restarted gets B's table by bulk resync, and the connections' ends;
  - the same (nat) with a fourth backend added to echo on B only (tandemctl backend add) before
    the failover: both units report the services digests differ, B's Maglev table differs (new
    connections through B reach the new backend), yet every old connection stays on its
    backend, byte for byte (without sync 12 of 40 were reset when this test was written);
  - config sync: a backend added over ctl on A is on B (pushed, applied) and a drain on B goes
    back to A; changes made on both while the sync link is cut are a conflict on both units,
    nothing merged, until `tandemctl sync push` on A makes A's win; a standby restarted from a
    stale file takes the active's newer services (with [sync] config = "compare" it keeps its
    own, and both report which is newer).

`sync status` is read through tandemlab.ha.SyncStatus only; tables are compared by
tandemlab.ha.table_difference (client, VIP, backend, mode, state, fullnat local address).
"""

from __future__ import annotations

import itertools
import json
import socket
import statistics
import time
import tomllib

import pytest

import tandemlab as tl
from tandemlab import ha as hal
from tandemlab.config import SyncConfig

_ranges = itertools.count()
ECHO, WEB, DNS = hal.ECHO, hal.WEB, 5353
CONVERGE_BOUND = 1.0          # s: generous (the target is 10 ms) for a loaded 2-core box
LOSSY_BOUND = 5.0             # s: with 5% loss or a relay in the way
# The units declare each other dead after 100 ms of silence (10 adverts) rather than ha_lab's
# 30 ms: these tests are about state sync, and on a loaded 2-core machine a 30 ms hiccup of a
# unit's HA thread makes a spurious failover (and, seen once, a lasting dual-active) that would
# fail them for reasons of HA detection, which test_ha.py covers.
HA = {"dead_intervals": 10}


@pytest.fixture
def nets():
    base = 160 + 3 * (next(_ranges) % 10)
    return {"subnet_n": f"10.199.{base}", "subnet_s": f"10.199.{base + 1}",
            "subnet_sync": f"10.199.{base + 2}"}


# --- helpers ------------------------------------------------------------------------------------

def wait_ready(t: hal.HaLab, timeout: float = 5.0) -> dict[str, hal.SyncStatus]:
    """Both units hear each other's sync stream, and B (started after A) holds A's table."""
    sa = hal.wait_sync(t.a, lambda s: s.peer_heard, "peer heard", timeout)
    sb = hal.wait_sync(t.b, lambda s: s.peer_heard and s.ready and s.resync_state == "done",
                       "ready (bulk resync done)", timeout)
    return {"a": sa, "b": sb}


def http_all(t: hal.HaLab, n: int, tag: str, threads: int = 6) -> tl.HttpBurst:
    burst = tl.http_burst(t.client, t.vip, WEB, n, threads=threads, timeout=3.0, budget=30.0,
                          tag=tag)
    assert len(burst.ok) == n, f"{len(burst.ok)}/{n} HTTP requests succeeded: {burst.failed[:5]}"
    return burst


def echo_checked(t: hal.HaLab, long: tl.EchoClients, *, max_gap: float = 1.0,
                 seen_as: dict[int, tuple[str, int]] | None = None) -> dict:
    """Every long-lived echo connection finished without error, with every round answered
    byte for byte, no stall longer than max_gap, and each backend's echo server saw exactly the
    bytes its clients sent as one connection from the same address and port (no connection
    moved to another backend or another NAT binding). seen_as: client port -> the (address,
    port) the backend sees (fullnat: the unit's local address and port); default the client's."""
    res = long.result()
    done, rounds = res["done"], res["rounds"]
    bad = [c for c in done if c["error"]]
    assert not bad, f"{len(bad)}/{len(done)} echo connections failed: {bad[:5]}"
    short = [(c["i"], c["msgs"]) for c in done if c["msgs"] != rounds]
    assert not short, f"connections with missing rounds (of {rounds}): {short[:10]}"
    slow = [(c["i"], c["backend"], round(c["max_gap"], 3)) for c in done if c["max_gap"] > max_gap]
    assert not slow, f"round trips stalled: {slow}"
    ports = {c["local_port"]: c for c in done}
    as_seen = {p: (seen_as or {}).get(p, (t.client_ip, p)) for p in ports}
    client_of = {v: p for p, v in as_seen.items()}
    seen: dict[int, list] = {p: [] for p in ports}
    for name, srv in t.servers.items():
        for e in srv.log_entries("echo"):
            p = client_of.get((e["peer"], e["sport"]))
            if p is not None:
                seen[p].append((name, e.get("bytes"), e.get("error")))
    wrong = {p: (ports[p]["backend"], ports[p]["bytes"], got) for p, got in seen.items()
             if got != [(ports[p]["backend"], ports[p]["bytes"], None)]}
    assert not wrong, f"client port: (backend, bytes sent) vs what the backends saw: {wrong}"
    return res


def handled(u: hal.HaUnit) -> dict[str, int]:
    return u.ctl("counters", timeout=10)["handled"]


def metric(families: dict, name: str, **labels: str) -> float:
    """The sum of a family's samples whose labels include `labels` (AssertionError if the family
    or every such sample is missing)."""
    fam = families.get(name)
    assert fam is not None, f"no metric family {name}"
    got = [v for lb, v in fam["samples"].items()
           if all(dict(lb).get(k) == want for k, want in labels.items())]
    assert got, f"no sample {name}{labels}: {fam['samples']}"
    return sum(got)


def no_traffic(rows: list[dict]) -> list[dict]:
    """Rows that counted a packet or a byte (a standby's replicated entries must not)."""
    return [r for r in rows if r.get("packets_in") or r.get("packets_out") or
            r.get("bytes_in") or r.get("bytes_out")]


def start_all(t: hal.HaLab) -> None:
    """What ha_lab(start=True) does: A active, B standby, neighbours warm, both paths heard."""
    hal.start_units(t, settle=False)
    hal.warm_neighbours(t)
    hal.wait_paths(t)


_HOLD = r"""
import json, socket, sys, time
addr, port, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((addr, port), timeout=5)
connected = time.monotonic()
hello = s.makefile("rb").readline().decode(errors="replace").split()
print(json.dumps({"connected": connected, "greeted": time.monotonic(),
                  "local_port": s.getsockname()[1], "backend": hello[-1] if hello else None}),
      flush=True)
time.sleep(hold)
"""


class CtlConn:
    """One persistent connection to a unit's ctl socket (docs/ctl-protocol.md: a JSON request
    per line, answered in order), for polling faster than a tandemctl process per query allows.
    Only the timing probe uses it; everything else goes through tandemctl."""

    def __init__(self, u: hal.HaUnit, timeout: float = 5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(u.unit.ctl_socket)
        self.file = self.sock.makefile("rb")
        self.n = 0

    def __call__(self, cmd: str, **args) -> dict:
        self.n += 1
        self.sock.sendall(json.dumps({"v": 1, "id": self.n, "cmd": cmd, "args": args}).encode()
                          + b"\n")
        reply = json.loads(self.file.readline())
        assert reply.get("id") == self.n and reply.get("ok"), reply
        return reply["result"]

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def time_one_connection(t: hal.HaLab, i: int, hold: float = 20.0) -> dict:
    """Open one more echo connection (and hold it) while polling both units' established echo
    counts over persistent ctl connections; -> {"a_ms", "b_ms" (after the client's handshake
    completed), "poll_ms" (the median poll round: the resolution)}."""
    query = {"service": "echo", "state": "established"}
    conns = {k: CtlConn(u) for k, u in t.units.items()}
    try:
        base = {k: c("connections.count", **query)["count"] for k, c in conns.items()}
        seen: dict[str, float] = {}
        polls = []
        p = t.client.spawn_python(_HOLD, t.vip, str(ECHO), str(hold), log_name=f"hold-{i}")
        deadline = time.monotonic() + 5.0
        while len(seen) < 2 and time.monotonic() < deadline:
            t0 = time.monotonic()
            for k, c in conns.items():
                if k not in seen and c("connections.count", **query)["count"] > base[k]:
                    seen[k] = time.monotonic()
            polls.append(time.monotonic() - t0)
    finally:
        for c in conns.values():
            c.close()
    log = p.wait_output('{"connected"', timeout=5)
    info = json.loads(next(line for line in log.splitlines() if line.startswith('{"connected"')))
    assert set(seen) == {"a", "b"}, f"connection {i}: seen on {sorted(seen)} only; {info}"
    return {"a_ms": (seen["a"] - info["connected"]) * 1000,
            "b_ms": (seen["b"] - info["connected"]) * 1000,
            "poll_ms": statistics.median(polls) * 1000}


# --- offline: the config writer and the status reader --------------------------------------------

@pytest.mark.offline
def test_sync_config_toml():
    ha = tl.HaConfig(key="k" * 20, sync_listen="10.199.9.1:8693", sync_peer="10.199.9.2:8693")
    port = [tl.PortConfig("north0", "x", "10.199.1.2/24")]
    full = tl.UnitConfig(ports=port, ha=ha, sync=SyncConfig(
        enabled=True, listen="10.199.9.1:8694", peer="10.199.9.1:9694", mode="async",
        refresh_ms=2000, key="s" * 24))
    d = tomllib.loads(full.to_toml())
    assert d["sync"] == {"enabled": True, "listen": "10.199.9.1:8694", "peer": "10.199.9.1:9694",
                         "mode": "async", "refresh_ms": 2000, "key": "s" * 24}
    assert d["ha"]["sync_listen"] == "10.199.9.1:8693"
    empty = tl.UnitConfig(ports=port, ha=ha, sync=SyncConfig())
    assert tomllib.loads(empty.to_toml())["sync"] == {}
    assert tomllib.loads(tl.UnitConfig(ports=port, ha=ha, sync=SyncConfig(
        enabled=False)).to_toml())["sync"] == {"enabled": False}
    assert "sync" not in tomllib.loads(tl.UnitConfig(ports=port, ha=ha).to_toml())
    # ha_lab's merge: both units' table, then one unit's over it.
    merged = hal._sync_config({"refresh_ms": 500, "key": "a" * 16}, {"key": "b" * 16})
    assert (merged.refresh_ms, merged.key, merged.listen) == (500, "b" * 16, None)
    assert hal._sync_config(None, None) is None
    assert hal._sync_config(True, None).to_dict() == {}
    assert hal._sync_config(SyncConfig(mode="async"), {"enabled": True}).to_dict() == \
        {"mode": "async", "enabled": True}
    with pytest.raises(ValueError):
        hal._sync_config({"no_such_key": 1}, None)
    assert hal._port_plus_one("10.199.9.1:8693") == "10.199.9.1:8694"


SAMPLE_STATUS = {
    "enabled": True, "mode": "async", "listen": "10.199.9.2:8694",
    "peer_address": "10.199.9.1:8694", "ready": True, "epoch": 77,
    "peer": {"unit_id": 1, "epoch": 55, "heard": True},
    "send": {"sequence": 9, "acked": 9, "in_flight": 0, "messages": 9, "records": 40,
             "retransmits": 2, "fast_retransmits": 1, "acks": 5, "gave_up": 0, "backpressure": 0,
             "ring_dropped": 0},
    "receive": {"messages": 12, "delivered": 11, "out_of_order": 1, "duplicates": 1,
                "beyond_window": 0, "skipped": 0},
    "lag": {"entries": 0, "ms": 0},
    "apply": {"created": 30, "refreshed": 4, "deleted": 0, "absent": 0, "conflict": 0,
              "table_full": 0, "bad_record": 0},
    "resync": {"state": "done", "id": 3, "requests_sent": 1, "received_entries": 20,
               "completed": 1, "served": 0, "served_entries": 0},
    "auth_failures": 0,
    "errors": {"too_short": 0, "bad_magic": 0, "bad_version": 0, "bad_length": 0, "bad_auth": 0,
               "bad_field": 0, "own_unit": 0, "stale_epoch": 0, "replayed": 1},
    "alarm": False}


@pytest.mark.offline
def test_sync_status_reader():
    s = hal.SyncStatus(SAMPLE_STATUS)
    assert s.enabled and s.ready and not s.alarm and s.mode == "async"
    assert (s.listen, s.peer_address, s.epoch) == ("10.199.9.2:8694", "10.199.9.1:8694", 77)
    assert (s.peer_heard, s.peer_unit_id, s.peer_epoch) == (True, 1, 55)
    assert s.send("records") == 40 and s.retransmits == 3 and s.receive("duplicates") == 1
    assert s.apply("created") == 30 and s.resync("completed") == 1 and s.resync_state == "done"
    assert s.error("replayed") == 1 and s.error("bad_auth") == 0 and s.auth_failures == 0
    assert (s.lag_entries, s.lag_ms) == (0, 0)
    assert s.errors["replayed"] == 1 and s.brief()["errors"] == {"replayed": 1}
    with pytest.raises(ValueError):
        s.send("no_such_counter")
    empty = hal.SyncStatus({"enabled": False})
    assert not empty.enabled and not empty.ready and empty.apply("created") == 0
    assert empty.resync_state is None and not empty.peer_heard


@pytest.mark.offline
def test_table_difference():
    row = {"worker": 0, "service": "echo", "protocol": "tcp", "client": "10.1.1.1:40000",
           "vip": "10.1.1.100:7000", "backend": "10.1.2.21:7000", "mode": "nat",
           "state": "established", "packets_in": 5}
    other = dict(row, client="10.1.1.1:40001")
    replica = dict(row, packets_in=0, worker=1)
    assert hal.same_table(hal.table_difference([row, other], [other, replica]))
    d = hal.table_difference([row, other], [dict(replica, backend="10.1.2.22:7000")])
    assert [x["client"] for x in d["missing"]] == ["10.1.1.1:40001"] and not d["extra"]
    assert d["different"][0][1]["backend"] == "10.1.2.22:7000"
    assert not hal.same_table(hal.table_difference([row], [dict(row, state="time_wait")]))
    assert hal.same_table(hal.table_difference([row], [dict(row, state="syn_recv")], state=False))
    with pytest.raises(AssertionError):
        hal.table_view([row, row])


@pytest.mark.lab_only
def test_sync_lab_config(nets):
    """ha_lab's [sync] tables (without tandemd): defaults derived from [ha], one unit's key
    over the common table, peers pointed at relays."""
    lab = tl.Lab()
    try:
        y = nets["subnet_sync"]
        relay = hal.sync_peer_via_relay(y)
        t = hal.ha_lab(lab, ha=HA, start=False, servers=False, sync={"refresh_ms": 2000},
                       sync_a=relay["sync_a"], sync_b={**relay["sync_b"], "key": "x" * 20},
                       **nets)
        c = {k: tomllib.loads(u.unit.config_path.read_text()) for k, u in t.units.items()}
        assert c["a"]["sync"] == {"refresh_ms": 2000, "peer": f"{y}.1:{hal.RELAY_PORT}"}
        assert c["b"]["sync"] == {"refresh_ms": 2000, "key": "x" * 20,
                                  "peer": f"{y}.2:{hal.RELAY_PORT}"}
        assert (t.a.sync_listen, t.a.sync_peer) == (f"{y}.1:8694", f"{y}.1:{hal.RELAY_PORT}")
        assert (t.b.sync_listen, t.b.sync_peer) == (f"{y}.2:8694", f"{y}.2:{hal.RELAY_PORT}")
        relays = hal.sync_relays(t, delay_ms=1, lifetime=10)
        assert {k: (r.listen, r.dest) for k, r in relays.items()} == {
            "a": (t.a.sync_peer, t.b.sync_listen), "b": (t.b.sync_peer, t.a.sync_listen)}
        plain = hal.ha_lab(tl.Lab(), start=False, servers=False, **nets)   # closed below
        try:
            assert "sync" not in tomllib.loads(plain.a.unit.config_path.read_text())
            assert (plain.b.sync_listen, plain.b.sync_peer) == (f"{y}.2:8694", f"{y}.1:8694")
            with pytest.raises(ValueError):
                hal.sync_relays(plain)
        finally:
            assert plain.lab.close() == []
    finally:
        assert lab.close() == []


def test_check_config_sync_table(lab):
    """tandemd --check-config: [sync] accepted with [ha], and each refusal names its key."""
    port = [tl.PortConfig("north0", tl.af_xdp("northx"), "10.199.0.2/24")]
    ha = tl.HaConfig(key="k" * 20, sync_listen="10.199.9.1:8693", sync_peer="10.199.9.2:8693",
                     data_port="north0", data_peer="10.199.0.3")
    cases = [
        ("good", ha, SyncConfig(refresh_ms=5000, listen="10.199.9.1:9000", key="s" * 16), None),
        ("defaults", ha, SyncConfig(), None),
        ("disabled", ha, SyncConfig(enabled=False, refresh_ms=900000), None),
        ("no-ha", None, SyncConfig(), "sync: needs an [ha] table"),
        ("mode", ha, SyncConfig(mode="bogus"), "sync.mode:"),
        ("short-key", ha, SyncConfig(key="short"), "sync.key: must be at least 16 bytes"),
        ("refresh", ha, SyncConfig(refresh_ms=900000), "sync.refresh_ms: must be shorter"),
        ("same-port", ha, SyncConfig(listen="10.199.9.1:8693"), "is [ha] sync_listen"),
        ("unknown", ha, SyncConfig(extra={"bogus": 1}), "sync.bogus: unknown key"),
        ("two-keys", ha, SyncConfig(key="x" * 20, key_file="/etc/x"), "sync.key_file"),
    ]
    for name, ha_cfg, sync_cfg, error in cases:
        path = lab.workdir / f"sync-{name}.toml"
        path.write_text(tl.UnitConfig(ports=port, ha=ha_cfg, sync=sync_cfg).to_toml())
        cp = tl.check_config(path)
        if error is None:
            assert cp.returncode == 0, (name, cp.stdout + cp.stderr)
        else:
            assert cp.returncode == 1 and error in cp.stderr, (name, cp.stderr)


# --- the lab -------------------------------------------------------------------------------------

def test_standby_table_matches_active(lab, nets):
    import test_metrics as tm
    vip = f"{nets['subnet_n']}.{hal.VIP_HOST}"
    services = hal.default_services(vip, nets["subnet_s"], 3) + [
        tl.ServiceConfig("dns", vip, port=DNS, protocol="udp", mode="nat", group=1,
                         backends=[tl.BackendConfig(f"{nets['subnet_s']}.{20 + i}")
                                   for i in range(1, 4)])]
    t = hal.ha_lab(lab, ha=HA, services=services, unit_kw={"metrics_listen": tm.LISTEN}, **nets)
    for h in t.backends:
        tl.LbBackend(h.ns, h.name, udp=[DNS], log_name=f"udp-{h.name}")
    y = nets["subnet_sync"]
    st = wait_ready(t)
    sa, sb = st["a"], st["b"]
    print(f"\nsync status after start: A {sa.brief()}\nB {sb.brief()}")
    assert sa.enabled and sb.enabled and sa.mode == sb.mode == "async"
    assert (sa.listen, sa.peer_address) == (f"{y}.1:8694", f"{y}.2:8694"), sa.raw
    assert (sb.listen, sb.peer_address) == (f"{y}.2:8694", f"{y}.1:8694"), sb.raw
    assert (sa.peer_unit_id, sb.peer_unit_id) == (hal.UNIT_ID["b"], hal.UNIT_ID["a"])
    assert sa.epoch and sb.epoch and sa.epoch != sb.epoch
    assert sb.peer_epoch == sa.epoch and sa.peer_epoch == sb.epoch
    assert sb.resync("completed") >= 1 and sa.resync("served") >= 1, (sa.raw, sb.raw)
    assert not sa.alarm and not sb.alarm and sa.auth_failures == sb.auth_failures == 0
    assert hal.conn_count(t.b) == 0
    hal.wait_sync(t.a, lambda s: s.config_match is True, "the same services as the peer", 2.0)
    hal.wait_sync(t.b, lambda s: s.config_match is True, "the same services as the peer", 2.0)

    # Long-lived connections through A.
    n = 40
    long = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.1, duration=7.0,
                          log_name="echo-long")
    opened = long.opened()
    t_open = time.monotonic()
    assert not [c for c in opened if c["error"]], opened
    rows_a, rows_b, took = hal.wait_tables_match(t, "a", "b", "--service", "echo",
                                                 timeout=CONVERGE_BOUND + 2.0, interval=0.0)
    since_open = time.monotonic() - t_open
    print(f"{n} echo connections: B's table = A's {took * 1000:.0f} ms after they were all open "
          f"(both tables listed per poll)")
    assert len(rows_a) == n and {r["state"] for r in rows_a} == {"established"}, rows_a[:3]
    assert {r["client"] for r in rows_a} == {f"{t.client_ip}:{c['local_port']}" for c in opened}
    assert not no_traffic(rows_b), no_traffic(rows_b)[:3]
    assert since_open < CONVERGE_BOUND + 0.5, since_open

    # One new connection at a time: from the client's handshake to each unit's entry.
    timings = [time_one_connection(t, i) for i in range(8)]
    b_ms = sorted(x["b_ms"] for x in timings)
    behind = sorted(x["b_ms"] - x["a_ms"] for x in timings)
    print("one connection at a time, established on A / on B, ms after the client's connect() "
          f"returned (poll resolution ~{statistics.median(x['poll_ms'] for x in timings):.1f} "
          "ms): " + ", ".join(f"{x['a_ms']:.1f}/{x['b_ms']:.1f}" for x in timings) +
          f"; B behind A: median {statistics.median(behind):.1f} ms, max {behind[-1]:.1f} ms")
    assert b_ms[len(b_ms) // 2] < CONVERGE_BOUND * 1000, timings

    # Short connections: created, established, closed on A, the same on B; and UDP flows.
    flows = tl.udp_flows(t.client, t.vip, DNS, flows=20, per_flow=2)
    assert all(f["error"] is None and all(r["ok"] for r in f["replies"]) for f in flows), flows
    burst = http_all(t, 60, "short")
    total = n + len(timings) + 60 + 20
    rows_a, rows_b, took = hal.wait_tables_match(t, "a", "b", timeout=CONVERGE_BOUND + 2.0,
                                                 interval=0.0, minimum=total)
    print(f"after {len(burst.ok)} HTTP connections (and 20 UDP flows): B's whole table "
          f"({len(rows_b)} entries, states {sorted({r['state'] for r in rows_b})}) = A's "
          f"{took * 1000:.0f} ms after the burst ended")
    assert took < CONVERGE_BOUND, took
    by_service = {svc: [r for r in rows_b if r["service"] == svc] for svc in ("web", "echo", "dns")}
    assert {k: len(v) for k, v in by_service.items()} == \
        {"web": 60, "echo": n + len(timings), "dns": 20}, rows_b
    assert {r["client"] for r in by_service["dns"]} == \
        {f"{t.client_ip}:{f['sport']}" for f in flows}
    assert {(r["protocol"], r["state"]) for r in by_service["dns"]} == {("udp", "udp")}
    assert not no_traffic(rows_b), no_traffic(rows_b)[:3]
    assert {r["backend"].split(":")[0] for r in rows_b} <= {h.ip for h in t.backends}

    sa, sb = hal.sync_status(t.a), hal.sync_status(t.b)
    print(f"A {sa.brief()}\nB {sb.brief()}")
    records = total
    assert sa.send("records") >= records, sa.raw
    assert sb.apply("created") >= records, sb.raw
    assert sb.apply("conflict") == sb.apply("table_full") == sb.apply("bad_record") == 0, sb.raw
    assert sa.send("gave_up") == 0 and sa.send("ring_dropped") == 0, sa.raw
    assert sb.receive("skipped") == 0 and not sb.errors.get("bad_auth"), sb.raw
    hal.wait_sync(t.a, lambda s: s.lag_entries == 0, "lag 0 entries", 2.0)

    # /metrics of both.
    fa = tm.scrape_until(t.a.ns, lambda f: metric(f, "tandem_sync_lag_entries") == 0, timeout=3.0)
    fb = tm.scrape(t.b.ns)
    summary = {k: {m: metric(f, m) for m in ("tandem_sync_ready", "tandem_sync_lag_entries",
                                             "tandem_sync_lag_ms",
                                             "tandem_sync_records_sent_total",
                                             "tandem_sync_messages_received_total",
                                             "tandem_sync_retransmits_total")}
               for k, f in (("a", fa), ("b", fb))}
    print(f"metrics: {summary}")
    assert fa["tandem_sync_ready"]["type"] == "gauge"
    assert fa["tandem_sync_records_sent_total"]["type"] == "counter"
    assert metric(fb, "tandem_sync_ready") == 1
    assert metric(fa, "tandem_sync_records_sent_total") >= records
    assert metric(fb, "tandem_sync_messages_received_total") > 0
    assert metric(fb, "tandem_sync_apply_total", result="created") >= records
    assert metric(fb, "tandem_sync_errors_total", reason="bad_auth") == 0
    echo_checked(t, long)


def test_sync_disabled_replicates_nothing(lab, nets):
    t = hal.ha_lab(lab, ha=HA, sync={"enabled": False}, **nets)
    s = hal.sync_status(t.b)
    assert not s.enabled, s.raw
    long = tl.EchoClients(t.client, t.vip, ECHO, n=10, interval=0.1, duration=1.5,
                          log_name="echo-long")
    long.opened()
    http_all(t, 20, "disabled")
    time.sleep(0.5)
    assert hal.conn_count(t.a) >= 30
    assert hal.conn_count(t.b) == 0
    for k, u in t.units.items():
        s = hal.sync_status(u)
        assert not s.enabled and s.send("records") == 0 and s.apply("created") == 0, (k, s.raw)
    echo_checked(t, long)


def test_ends_reach_the_standby(lab, nets):
    """Entries end on B too: closed HTTP connections expire on both units (close and time-wait
    timeouts of 1 s), by B's own expiry or A's deletes; a flush of echo's connections on A
    deletes them on B, and the entries A then adopts mid-flow (the echo traffic goes on) are
    replicated again, on the same backends."""
    timeouts = {"tcp_close_ms": 1000, "tcp_time_wait_ms": 1000, "tcp_fin_wait_ms": 1000,
                "tcp_last_ack_ms": 1000, "tcp_close_wait_ms": 1000}
    t = hal.ha_lab(lab, ha=HA, unit_kw={"conntrack": timeouts}, **nets)
    wait_ready(t)
    http_all(t, 30, "expiring")
    rows_a, _, _ = hal.wait_tables_match(t, "a", "b", timeout=CONVERGE_BOUND + 2.0, minimum=30)
    assert "established" not in {r["state"] for r in rows_a}, rows_a[:3]
    t0 = time.monotonic()
    tl.wait_until(lambda: hal.conn_count(t.a) == 0 and hal.conn_count(t.b) == 0, timeout=4.0,
                  interval=0.05, what="every closed connection to expire on both units")
    sb = hal.sync_status(t.b)
    print(f"\n30 closed connections gone from both tables {(time.monotonic() - t0) * 1000:.0f} "
          f"ms after they matched; B apply {sb.raw.get('apply')}")
    assert sb.apply("deleted") + sb.apply("absent") >= 30, sb.raw
    assert sb.apply("conflict") == 0, sb.raw

    long = tl.EchoClients(t.client, t.vip, ECHO, n=10, interval=0.1, duration=3.0,
                          log_name="echo-long")
    assert not [c for c in long.opened() if c["error"]]
    rows_a, _, _ = hal.wait_tables_match(t, "a", "b", "--service", "echo",
                                         timeout=CONVERGE_BOUND + 2.0, minimum=10)
    before = hal.sync_status(t.b)
    assert t.a.ctl("connections", "flush", "--service", "echo")["flushed"] == 10
    after = hal.wait_sync(t.b, lambda s: s.apply("deleted") >= before.apply("deleted") + 10,
                          "the flushed entries deleted", timeout=2.0)
    again, _, took = hal.wait_tables_match(t, "a", "b", "--service", "echo",
                                           timeout=CONVERGE_BOUND + 2.0, minimum=10)
    print(f"flush of echo on A: B deleted {after.apply('deleted') - before.apply('deleted')}, "
          f"the re-adopted entries equal on B {took * 1000:.0f} ms later")
    assert hal.table_view(again, state=False) == hal.table_view(rows_a, state=False)
    echo_checked(t, long)


def test_tables_converge_with_loss(lab, nets):
    """5% random loss on the sync link, both directions (iptables in A's namespace). refresh_ms
    250: the busy echo connections are re-sent all the time, so many messages cross (and some
    are lost) also after the burst; their refreshes are counted."""
    refresh_ms = 250
    t = hal.ha_lab(lab, ha=HA, sync={"refresh_ms": refresh_ms}, **nets)
    wait_ready(t)
    before = {k: hal.sync_status(u) for k, u in t.units.items()}
    out_rule, in_rule = hal.sync_loss(t, "a", 0.05)
    long = tl.EchoClients(t.client, t.vip, ECHO, n=60, interval=0.2, duration=7.0,
                          log_name="echo-long")
    assert not [c for c in long.opened() if c["error"]]
    http_all(t, 150, "lossy", threads=8)
    rows_a, rows_b, took = hal.wait_tables_match(t, "a", "b", timeout=LOSSY_BOUND,
                                                 interval=0.02, minimum=210)
    sa, sb = hal.sync_status(t.a), hal.sync_status(t.b)
    dropped = {"a->b": out_rule.packets(), "b->a": in_rule.packets()}
    print(f"\n5% loss: B's table ({len(rows_b)} entries) = A's {took * 1000:.0f} ms after the "
          f"burst ended; dropped {dropped}\nA {sa.brief()}\nB {sb.brief()}")
    assert sum(dropped.values()) > 0, dropped
    if dropped["a->b"]:
        assert sa.retransmits > before["a"].retransmits, sa.raw
    assert sa.send("gave_up") == 0 and sb.receive("skipped") == 0, (sa.raw, sb.raw)
    assert not no_traffic(rows_b)
    assert sb.apply("conflict") == 0, sb.raw
    # Refreshes: every busy connection re-sent about every refresh_ms, and applied as such.
    gap = 1.5
    time.sleep(gap)
    sa2, sb2 = hal.sync_status(t.a), hal.sync_status(t.b)
    sent, refreshed = (sa2.send("records") - sa.send("records"),
                       sb2.apply("refreshed") - sb.apply("refreshed"))
    expected = 60 * gap * 1000 / refresh_ms
    print(f"in {gap} s of echo traffic: A sent {sent} records, B refreshed {refreshed} entries "
          f"(60 busy connections, refresh_ms {refresh_ms}: ~{expected:.0f}); dropped now "
          f"{out_rule.packets()} + {in_rule.packets()}")
    assert sent >= expected * 0.5 and refreshed >= expected * 0.5, (sent, refreshed, expected)
    assert sb2.apply("created") == sb.apply("created"), (sb.raw, sb2.raw)
    hal.wait_tables_match(t, "a", "b", timeout=LOSSY_BOUND, minimum=210)
    echo_checked(t, long)


def test_tables_converge_through_delaying_reordering_duplicating_relays(lab, nets):
    """Each unit's [sync] peer is a relay in its own namespace (5 ms + up to 10 ms jitter, 5%
    duplicates) forwarding to the other unit's listen address."""
    t = hal.ha_lab(lab, ha=HA, start=False, **nets, **hal.sync_peer_via_relay(nets["subnet_sync"]))
    relays = hal.sync_relays(t, delay_ms=5, jitter_ms=10, duplicate=0.05, seed=11, lifetime=120)
    start_all(t)
    wait_ready(t)
    long = tl.EchoClients(t.client, t.vip, ECHO, n=40, interval=0.1, duration=5.0,
                          log_name="echo-long")
    assert not [c for c in long.opened() if c["error"]]
    http_all(t, 150, "relayed", threads=8)
    rows_a, rows_b, took = hal.wait_tables_match(t, "a", "b", timeout=LOSSY_BOUND,
                                                 interval=0.02, minimum=190)
    sa, sb = hal.sync_status(t.a), hal.sync_status(t.b)
    stats = {k: r.stats() for k, r in relays.items()}
    print(f"\nrelays (5 ms + 0..10 ms, 5% duplicates): B's table ({len(rows_b)} entries) = A's "
          f"{took * 1000:.0f} ms after the burst ended\nrelay A->B {stats['a']}\nrelay B->A "
          f"{stats['b']}\nA {sa.brief()}\nB {sb.brief()}")
    for k, s in stats.items():
        assert s["forwarded"] > 0 and s["overflow"] == 0 and s["send_errors"] == 0, (k, s)
        assert s["delay_ms_min"] >= 5, (k, s)
    assert stats["a"]["duplicated"] > 0 and stats["a"]["reordered"] > 0, stats["a"]
    assert sb.receive("duplicates") + sb.error("replayed") > 0, sb.raw
    assert sb.receive("out_of_order") > 0, sb.raw
    assert sa.send("gave_up") == 0 and sb.receive("skipped") == 0, (sa.raw, sb.raw)
    assert sb.apply("conflict") == 0 and not no_traffic(rows_b), sb.raw
    echo_checked(t, long)


def test_restarted_standby_gets_bulk_resync(lab, nets):
    t = hal.ha_lab(lab, ha=HA, **nets)
    wait_ready(t)
    n = 100
    long = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.25, duration=9.0,
                          log_name="echo-long")
    assert not [c for c in long.opened() if c["error"]]
    hal.wait_tables_match(t, "a", "b", "--service", "echo", timeout=CONVERGE_BOUND + 2.0,
                          minimum=n)
    served_before = hal.sync_status(t.a)

    t.b.kill()
    t0 = time.monotonic()
    t.b.start()
    up = time.monotonic()
    hal.wait_roles(t, {"a": "active", "b": "standby"}, timeout=5.0)
    sb = hal.wait_sync(t.b, lambda s: s.ready and s.resync("completed") >= 1,
                       "bulk resync completed", timeout=5.0, interval=0.01)
    ready = time.monotonic()
    rows_a, rows_b, took = hal.wait_tables_match(t, "a", "b", "--service", "echo",
                                                 timeout=CONVERGE_BOUND + 2.0, minimum=n)
    sa = hal.sync_status(t.a)
    print(f"\nB restarted (kill -9, start: {(up - t0) * 1000:.0f} ms to READY=1): sync ready "
          f"{(ready - up) * 1000:.0f} ms later, echo tables equal {took * 1000:.0f} ms after "
          f"that\nB {sb.brief()}\nA resync {sa.raw.get('resync')}")
    assert sb.resync_state == "done" and sb.resync("requests_sent") >= 1, sb.raw
    assert sb.resync("received_entries") >= n, sb.raw
    assert sa.resync("served") > served_before.resync("served"), sa.raw
    assert sa.resync("served_entries") - served_before.resync("served_entries") >= n, sa.raw
    assert len(rows_b) == n and not no_traffic(rows_b)
    assert sb.apply("created") >= n and sb.apply("conflict") == 0, sb.raw
    # New connections after the resync are replicated as usual.
    http_all(t, 30, "after-resync")
    hal.wait_tables_match(t, "a", "b", timeout=CONVERGE_BOUND + 2.0, minimum=n + 30)
    echo_checked(t, long)


def test_wrong_key_applies_nothing(lab, nets):
    import test_metrics as tm
    t = hal.ha_lab(lab, ha=HA, sync_b={"key": "not-the-sync-key-of-unit-a-0123"},
                   unit_kw={"metrics_listen": tm.LISTEN}, **nets)
    long = tl.EchoClients(t.client, t.vip, ECHO, n=20, interval=0.1, duration=4.0,
                          log_name="echo-long")
    assert not [c for c in long.opened() if c["error"]]
    http_all(t, 30, "wrong-key-1")
    # The alarm: messages fail authentication and nothing authentic heard for 2 s.
    sb1 = hal.wait_sync(t.b, lambda s: s.error("bad_auth") > 0 and s.alarm,
                        "bad_auth counted and the alarm raised", timeout=5.0)
    time.sleep(0.5)
    http_all(t, 30, "wrong-key-2")
    sb2 = hal.wait_sync(t.b, lambda s: s.error("bad_auth") > sb1.error("bad_auth"),
                        "bad_auth growing", timeout=3.0)
    sa = hal.sync_status(t.a)
    print(f"\nwrong key on B: B {sb2.brief()} auth_failures {sb2.auth_failures}\nA {sa.brief()}")
    assert hal.conn_count(t.a) >= 80
    assert hal.conn_count(t.b) == 0
    assert sb2.apply("created") == 0 and sb2.apply("refreshed") == 0, sb2.raw
    assert sb2.alarm and not sb2.ready and sb2.auth_failures > 0, sb2.raw
    assert sb2.receive("delivered") == 0, sb2.raw
    assert sa.apply("created") == 0, sa.raw
    f = tm.scrape(t.b.ns)
    assert metric(f, "tandem_sync_errors_total", reason="bad_auth") > 0
    assert metric(f, "tandem_sync_apply_total", result="created") == 0
    assert metric(f, "tandem_sync_ready") == 0
    # HA itself (its own key) is untouched: both paths alive, roles as they were.
    s = hal.status(t.b)
    assert s.peer_alive and not s.alarm("sync") and s.role() == "standby", s.raw
    echo_checked(t, long)


def endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


@pytest.mark.parametrize("mode", ["nat", "fullnat"])
def test_failover_keeps_long_lived_connections(lab, nets, mode):
    """kill -9 of the active once B holds the replicated entries: every echo connection keeps
    every byte through B, none adopted mid-flow. fullnat (echo with a floating local address
    S.6 in group 1): also the NAT binding, which B could not recompute (the backends see the
    same local address and port before and after). Then A comes back as standby and gets B's
    table (the flows that began as A's replicas included) by bulk resync, and their ends."""
    kw: dict = {}
    if mode == "fullnat":
        n_s, s = nets["subnet_n"], nets["subnet_s"]
        local = f"{s}.6"
        kw["services"] = hal.default_services(f"{n_s}.{hal.VIP_HOST}", s, 3)
        kw["services"][1].mode, kw["services"][1].local_addresses = "fullnat", [local]
        kw["groups"] = [tl.HaGroup(1, floating_addresses=[
            tl.FloatingAddress("south0", f"{s}.{hal.FLOATING_HOST}/24"),
            tl.FloatingAddress("south0", f"{local}/24")])]
    t = hal.ha_lab(lab, ha=HA, **kw, **nets)
    wait_ready(t)
    n = 30
    long = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.05, duration=6.0,
                          log_name="echo-long")
    opened = long.opened()
    assert not [c for c in opened if c["error"]]
    rows_a, rows_b, _ = hal.wait_tables_match(t, "a", "b", "--service", "echo",
                                              timeout=CONVERGE_BOUND + 2.0, minimum=n)
    assert {r["mode"] for r in rows_b} == {mode}, rows_b[:3]
    seen_as = None
    if mode == "fullnat":
        seen_as = {endpoint(r["client"])[1]: endpoint(r["local"]) for r in rows_a}
        assert {a for a, _ in seen_as.values()} == {local}, rows_a[:3]
    before = handled(t.b)
    time.sleep(0.5)
    t0 = time.monotonic()
    t.a.kill()
    hal.wait_roles(t, {"b": "active"}, timeout=3.0, interval=0.01)
    took = time.monotonic() - t0
    # The flows now carry traffic through B's replicated entries.
    rows = tl.wait_until(lambda: (lambda r: r if len(r) == n and all(x["packets_in"] > 0
                                                                    for x in r) else None)(
        hal.connections(t.b, "--service", "echo")), timeout=3.0, interval=0.05,
        what="every echo connection carrying traffic through B")
    assert {r["backend"] for r in rows} <= {f"{h.ip}:{ECHO}" for h in t.backends}
    adopted = handled(t.b).get("lb_midflow_flows", 0) - before.get("lb_midflow_flows", 0)
    print(f"\nkill -9 of A: B active after {took * 1000:.0f} ms, B adopted {adopted} "
          "connection(s) mid-flow")
    assert adopted == 0, before

    # A comes back (preempt off: as standby) and gets B's table in a bulk resync, B's flows
    # that began as replicas of A's included, while they carry traffic through B.
    t1 = time.monotonic()
    t.a.start()
    hal.wait_roles(t, {"a": "standby", "b": "active"}, timeout=5.0)
    sa = hal.wait_sync(t.a, lambda s: s.ready and s.resync("completed") >= 1,
                       "bulk resync from B completed", timeout=5.0, interval=0.01)
    ready = time.monotonic() - t1
    rows_b, rows_a, took = hal.wait_tables_match(t, "b", "a", "--service", "echo",
                                                 timeout=CONVERGE_BOUND + 2.0, minimum=n)
    print(f"A restarted: sync ready {ready * 1000:.0f} ms after its start, echo tables equal "
          f"{took * 1000:.0f} ms later; A {sa.brief()}")
    assert sa.resync("received_entries") >= n and not no_traffic(rows_a), sa.raw
    res = echo_checked(t, long, seen_as=seen_as)
    print(f"{n} connections, {res['rounds']} rounds each, max gap "
          f"{max(c['max_gap'] for c in res['done']):.3f} s")
    # Their ends (FIN, seen by B) reach A too.
    rows_b, rows_a, took = hal.wait_tables_match(t, "b", "a", "--service", "echo",
                                                 timeout=CONVERGE_BOUND + 2.0, minimum=n)
    print(f"closed: states on B {sorted({r['state'] for r in rows_b})}, A's table equal after "
          f"{took * 1000:.0f} ms")
    assert "established" not in {r["state"] for r in rows_b}, rows_b[:3]


def test_failover_keeps_flows_when_standby_maglev_differs(lab, nets):
    """Four backend hosts, echo balanced over three on both units; a fourth added to echo on B
    only (tandemctl backend add): B's Maglev table differs, so only the replicated entries keep
    the old flows on their backends after A dies."""
    n_s, s = nets["subnet_n"], nets["subnet_s"]
    vip = f"{n_s}.{hal.VIP_HOST}"
    hosts = [f"{s}.{20 + i}" for i in range(1, 4)]
    services = [tl.ServiceConfig("web", vip, port=WEB, mode="nat", group=1,
                                 backends=[tl.BackendConfig(h, port=hal.WEB_NAT) for h in hosts]),
                tl.ServiceConfig("echo", vip, port=ECHO, mode="nat", group=1, maglev_size=251,
                                 backends=[tl.BackendConfig(h) for h in hosts])]
    # Config sync compares only: B's change stays B's (pushed, it would reach A too).
    t = hal.ha_lab(lab, ha=HA, n_backends=4, services=services, sync={"config": "compare"}, **nets)
    wait_ready(t)
    new = t.backend("b4")
    n = 40
    long = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.05, duration=6.0,
                          log_name="echo-long")
    opened = long.opened()
    assert not [c for c in opened if c["error"]]
    assert {c["backend"] for c in opened} <= {"b1", "b2", "b3"}, opened
    hal.wait_tables_match(t, "a", "b", "--service", "echo", timeout=CONVERGE_BOUND + 2.0,
                          minimum=n)
    assert hal.sync_status(t.b).config_match is True
    out = t.b.ctl("backend", "add", "--service", "echo", "--address", new.ip)
    print(f"\nB only: {out['summary']}")
    for u in t.units.values():      # the services digests differ now, and both units say so
        hal.wait_sync(u, lambda s: s.config_match is False, "services differing", 2.0)
    echo_b = next(x for x in t.b.ctl("services", "list")["services"] if x["name"] == "echo")
    echo_a = next(x for x in t.a.ctl("services", "list")["services"] if x["name"] == "echo")
    assert len(echo_b["backends"]) == 4 and len(echo_a["backends"]) == 3
    # The replicated entries stay as they were.
    hal.wait_tables_match(t, "a", "b", "--service", "echo", timeout=1.0, minimum=n)
    before = handled(t.b)
    time.sleep(0.3)
    t.a.kill()
    hal.wait_roles(t, {"b": "active"}, timeout=3.0, interval=0.01)
    res = echo_checked(t, long)
    after = handled(t.b)
    adopted = after.get("lb_midflow_flows", 0) - before.get("lb_midflow_flows", 0)
    assert not [e for e in t.servers["b4"].log_entries("echo")
                if e["sport"] in {c["local_port"] for c in opened}], t.servers["b4"].log_entries()
    # B's own Maglev table does send new flows to the new backend.
    probe = tl.EchoClients(t.client, t.vip, ECHO, n=30, interval=0.05, duration=0.3,
                           log_name="echo-probe")
    p = probe.result()["done"]
    assert not [c for c in p if c["error"]], p
    spread = {b: sum(1 for c in p if c["backend"] == b) for b in {c["backend"] for c in p}}
    print(f"{n} old connections kept through B ({res['rounds']} rounds, max gap "
          f"{max(c['max_gap'] for c in res['done']):.3f} s), B adopted {adopted} mid-flow; new "
          f"connections through B: {spread}")
    assert spread.get("b4", 0) > 0, spread
    assert adopted == 0, (before, after)


def test_sync_mode_holds_first_packets_until_the_peer_acked(lab, nets):
    """[sync] mode = "sync": every new connection's first packet waits for B's ack of its entry
    (hold counters on A: every held packet released by the ack, none by the timeout in a quiet
    lab — at most a few under load), so a connection the client saw accepted is on B; kill -9
    of A right after the last handshake: every connection continues on B, none adopted
    mid-flow. Then B, alone, holds nothing: new connections are not delayed."""
    t = hal.ha_lab(lab, ha=HA, sync={"mode": "sync", "hold_timeout_ms": 50}, **nets)
    wait_ready(t)
    n = 40
    long = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.05, duration=4.0,
                          log_name="echo-sync-mode")
    assert not [c for c in long.opened() if c["error"]]
    hold = hal.sync_status(t.a).hold
    print(f"\nA's hold queue: {hold}")
    assert hold["holding"] is True, hold
    assert hold["held"] >= n, hold
    released = hold["released_acked"] + hold["released_timeout"] + hold["not_held"]
    assert released == hold["held"], hold
    assert hold["released_acked"] >= hold["held"] - 3, hold
    # No waiting for the replica: kill A at once.
    before = handled(t.b)
    t.a.kill()
    hal.wait_roles(t, {"b": "active"}, timeout=3.0, interval=0.01)
    res = echo_checked(t, long, max_gap=1.5)
    adopted = handled(t.b).get("lb_midflow_flows", 0) - before.get("lb_midflow_flows", 0)
    print(f"{n} connections through B after A's kill -9, {adopted} adopted mid-flow, max gap "
          f"{max(c['max_gap'] for c in res['done']):.3f} s")
    assert adopted == 0
    # B has no peer that acks: it does not hold, new connections go at once.
    hal.wait_sync(t.b, lambda s: s.hold.get("holding") is False, "B not holding", timeout=3.0)
    http_all(t, 10, tag="alone")
    assert hal.sync_status(t.b).hold["held"] == 0


def test_active_active_each_unit_holds_the_others_flows(lab, nets):
    """Active-active: group 1 (nat echo on VIP N.100) prefers A, group 2 (fullnat echo on VIP
    N.101, source address S.6 floating) prefers B, preempt on. Each unit replicates the flows of
    the group it serves, so each holds the other's; kill -9 of B: A takes group 2 and every
    fullnat connection continues on it with its NAT binding (the backends see the same address
    and port), none adopted mid-flow, while group 1's go on untouched."""
    n_s, s = nets["subnet_n"], nets["subnet_s"]
    vip2, local2 = f"{n_s}.101", f"{s}.6"
    hosts = [f"{s}.{20 + i}" for i in range(1, 4)]
    services = hal.default_services(f"{n_s}.{hal.VIP_HOST}", s, 3) + [
        tl.ServiceConfig("echo2", vip2, port=ECHO, mode="fullnat", group=2, local_addresses=[local2],
                         backends=[tl.BackendConfig(h, port=ECHO) for h in hosts])]

    def groups(prefer: int) -> list[tl.HaGroup]:
        return [tl.HaGroup(1, priority=200 if prefer == 1 else 100,
                           floating_addresses=[tl.FloatingAddress("south0", f"{s}.1/24")]),
                tl.HaGroup(2, priority=200 if prefer == 2 else 100,
                           floating_addresses=[tl.FloatingAddress("south0", f"{local2}/24")])]

    t = hal.ha_lab(lab, services=services, ha={**HA, "preempt": True}, ha_a={"groups": groups(1)},
                   ha_b={"groups": groups(2)}, **nets)
    hal.wait_roles(t, {"a": "standby", "b": "active"}, group=2, timeout=5.0)
    hal.wait_roles(t, {"a": "active", "b": "standby"}, group=1, timeout=1.0)
    wait_ready(t)
    n = 20
    long1 = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.05, duration=6.0, log_name="echo-g1")
    long2 = tl.EchoClients(t.client, vip2, ECHO, n=n, interval=0.05, duration=6.0, log_name="echo-g2")
    assert not [c for c in long1.opened() + long2.opened() if c["error"]]
    # Each unit holds the other's flows: A's nat flows on B, B's fullnat flows on A.
    hal.wait_tables_match(t, "a", "b", "--service", "echo", timeout=CONVERGE_BOUND + 2.0, minimum=n)
    rows_b, rows_a, _ = hal.wait_tables_match(t, "b", "a", "--service", "echo2",
                                              timeout=CONVERGE_BOUND + 2.0, minimum=n)
    assert {r["mode"] for r in rows_a} == {"fullnat"}, rows_a[:3]
    seen_as2 = {endpoint(r["client"])[1]: endpoint(r["local"]) for r in rows_b}
    assert {a for a, _ in seen_as2.values()} == {local2}, rows_b[:3]
    time.sleep(0.3)
    before = handled(t.a)
    t.b.kill()
    hal.wait_roles(t, {"a": "active"}, group=2, timeout=3.0, interval=0.01)
    echo_checked(t, long2, seen_as=seen_as2)
    echo_checked(t, long1)
    adopted = handled(t.a).get("lb_midflow_flows", 0) - before.get("lb_midflow_flows", 0)
    print(f"\nkill -9 of B: A serves both groups, {adopted} connection(s) adopted mid-flow")
    assert adopted == 0


# --- config sync: the newer services are pushed, concurrent changes are a conflict ------------

def three_of_four(nets) -> dict:
    """ha_lab arguments: four backend hosts, web and echo balanced over the first three."""
    n_s, s = nets["subnet_n"], nets["subnet_s"]
    services = hal.default_services(f"{n_s}.{hal.VIP_HOST}", s, 3)
    return dict(n_backends=4, services=services, **nets)


def backends_of(u) -> set[tuple]:
    """(service, backend, weight, state) of every backend, as `tandemctl backends` lists them."""
    return {(r["service"], r["backend"], r["weight"], r["state"]) for r in u.ctl("backends")["backends"]}


def wait_config(t, relation: str, timeout: float = 3.0) -> dict:
    """Both units report `relation` (for a push: "same") for their services."""
    return {k: hal.wait_sync(u, lambda s: s.config_relation == relation,
                             f"services relation {relation!r}", timeout)
            for k, u in t.units.items()}


def test_config_push_carries_changes_made_on_either_unit(lab, nets):
    """A change made over ctl on the active (a backend added) reaches the standby, applied there
    through the reload path: both list the same backends and report the same services. Then a
    change on the standby (a backend drained) goes the other way. Each push is counted once
    (sent by one unit, applied by the other), and the standby's log says its file no longer
    says what runs."""
    t = hal.ha_lab(lab, ha=HA, **three_of_four(nets))
    wait_ready(t)
    wait_config(t, "same")
    new = t.backend("b4")
    assert backends_of(t.a) == backends_of(t.b)
    t0 = time.monotonic()
    t.a.ctl("backend", "add", "--service", "echo", "--address", new.ip, "--weight", "2")
    st = wait_config(t, "same")
    took = time.monotonic() - t0
    assert ("echo", f"{new.ip}:{ECHO}", 2, "active") in backends_of(t.b)
    assert backends_of(t.a) == backends_of(t.b)
    assert st["a"].config_pushes("sent") == 1 and st["b"].config_pushes("applied") == 1, st
    t.b.unit.wait_log("applied the services pushed by the peer", timeout=2.0)
    print(f"\nbackend added on A: on B, applied, {took * 1000:.0f} ms later")
    # The other way: a change on B (the standby) is newer than A's services.
    t.b.ctl("backend", "drain", "--service", "echo", "--address", new.ip)
    st = wait_config(t, "same")
    assert ("echo", f"{new.ip}:{ECHO}", 0, "drained") in backends_of(t.a)
    assert backends_of(t.a) == backends_of(t.b)
    assert st["b"].config_pushes("sent") == 1 and st["a"].config_pushes("applied") == 1, st
    for k, s in st.items():
        assert s.config_pushes("errors") == 0 and s.config_pushes("refused") == 0, (k, s.raw)
    # New connections through A reach the new backend only now that it is undrained again.
    t.a.ctl("backend", "set", "--service", "echo", "--address", new.ip, "--weight", "2")
    wait_config(t, "same")
    probe = tl.EchoClients(t.client, t.vip, ECHO, n=30, interval=0.05, duration=0.2,
                           log_name="echo-probe")
    done = probe.result()["done"]
    assert not [c for c in done if c["error"]], done
    assert any(c["backend"] == "b4" for c in done), done


def test_config_conflict_is_reported_never_merged_until_an_operator_picks(lab, nets):
    """With the sync link cut (iptables drops every sync message), A adds a backend and B drains
    another: when the link returns, both units report a conflict and keep their own services
    (nothing merged, nothing pushed or applied). `tandemctl sync push` on A makes A's services
    win: B takes them whole (B's drain is undone)."""
    t = hal.ha_lab(lab, ha=HA, **three_of_four(nets))
    wait_ready(t)
    wait_config(t, "same")
    new, other = t.backend("b4"), t.backend("b1")
    cut = hal.sync_loss(t, "b", 1.0)
    t.a.ctl("backend", "add", "--service", "echo", "--address", new.ip)
    t.b.ctl("backend", "drain", "--service", "echo", "--address", other.ip)
    time.sleep(0.3)
    for f in cut:
        f.remove()
    st = wait_config(t, "conflict", timeout=5.0)
    time.sleep(0.5)  # nothing moves after it
    a, b = backends_of(t.a), backends_of(t.b)
    assert ("echo", f"{new.ip}:{ECHO}", 1, "active") in a and not any(r[1] == f"{new.ip}:{ECHO}" for r in b)
    assert ("echo", f"{other.ip}:{ECHO}", 0, "drained") in b and ("echo", f"{other.ip}:{ECHO}", 1, "active") in a
    for k in ("a", "b"):
        s = hal.sync_status(t.unit(k))
        assert s.config_relation == "conflict" and s.config_pushes("applied") == 0, (k, s.raw)
        t.unit(k).unit.wait_log("CONFLICT", timeout=1.0)
    # The operator picks A's services.
    out = t.a.ctl("sync", "push")
    print(f"\nconflict; `tandemctl sync push` on A: {out}")
    wait_config(t, "same")
    assert backends_of(t.a) == backends_of(t.b) == a
    assert hal.sync_status(t.b).config_pushes("applied") == 1


def test_restarted_standby_gets_the_services_changed_while_it_was_down(lab, nets):
    """B is killed; A gets a backend over ctl; B restarts from its (stale) file and, once it
    hears A, takes A's newer services. With [sync] config = "compare" on B instead, B keeps its
    file's services and both report the difference (A newer)."""
    t = hal.ha_lab(lab, ha=HA, **three_of_four(nets))
    wait_ready(t)
    wait_config(t, "same")
    new = t.backend("b4")
    t.b.kill()
    t.a.ctl("backend", "add", "--service", "web", "--address", new.ip, "--port", str(hal.WEB_NAT))
    t.b.start()
    wait_config(t, "same", timeout=10.0)
    assert ("web", f"{new.ip}:{hal.WEB_NAT}", 1, "active") in backends_of(t.b)
    assert backends_of(t.a) == backends_of(t.b)
    # compare mode on B: the difference is reported, B keeps its file's services.
    t.b.kill()
    cfg = t.b.unit.config
    cfg.sync = cfg.sync or SyncConfig()
    cfg.sync.config = "compare"
    t.b.unit.write_config()
    t.b.start()
    hal.wait_sync(t.b, lambda s: s.config_relation == "older", "B's services older than A's", 10.0)
    hal.wait_sync(t.a, lambda s: s.config_relation == "newer", "A's services newer than B's", 3.0)
    time.sleep(0.5)
    assert not any(r[1] == f"{new.ip}:{hal.WEB_NAT}" for r in backends_of(t.b))
    s = hal.sync_status(t.b)
    assert s.config_pushes("applied") == 0 and s.config_pushes("refused") >= 1, s.raw


def test_drill_hands_over_and_measures_without_losing_a_connection(lab, nets):
    """`tandemctl ha drill` on the active unit with 30 long-lived echo connections: refused on
    the standby; on A it hands the group to B and reports when B's adverts claimed it, the
    connections A held and how many changes B had not acked (none in a quiet lab); every
    connection keeps every byte through B, none adopted mid-flow; /metrics counts the drill.
    With B dead, a drill is refused and changes nothing."""
    import test_metrics as tm
    t = hal.ha_lab(lab, ha=HA, unit_kw={"metrics_listen": tm.LISTEN}, **nets)
    wait_ready(t)
    n = 30
    long = tl.EchoClients(t.client, t.vip, ECHO, n=n, interval=0.05, duration=4.0,
                          log_name="echo-long")
    assert not [c for c in long.opened() if c["error"]]
    hal.wait_tables_match(t, "a", "b", "--service", "echo", timeout=CONVERGE_BOUND + 2.0, minimum=n)
    with pytest.raises(tl.CtlError) as refused:
        t.b.ctl("ha", "drill")
    assert "active for no group" in refused.value.stderr
    before = handled(t.b)
    r = t.a.ctl("ha", "drill")
    print(f"\ndrill: {r}")
    assert r["result"] == "ok" and r["groups"] == [1] and r["peer_unit"] == 2, r
    assert r["connections_held"] >= n and r["unacked_at_handover"] == 0, r
    assert r["replicated"] == r["connections_held"], r
    assert 0 <= r["released_ms"] <= r["peer_active_ms"] < 3000, r
    hal.wait_roles(t, {"a": "standby", "b": "active"}, timeout=1.0)
    res = echo_checked(t, long)
    adopted = handled(t.b).get("lb_midflow_flows", 0) - before.get("lb_midflow_flows", 0)
    assert adopted == 0
    print(f"{n} connections through the drill, {res['rounds']} rounds, max gap "
          f"{max(c['max_gap'] for c in res['done']):.3f} s")
    f = tm.scrape(t.a.ns)
    assert metric(f, "tandem_ha_drills_total", result="ok") == 1
    assert metric(f, "tandem_ha_drill_last_connections", kind="held") == r["connections_held"]
    t.a.unit.wait_log("ha: drill: groups handed to unit 2", timeout=1.0)
    # A drill with no peer to take over is refused: nothing changes.
    t.a.kill()
    tl.wait_until(lambda: not hal.status(t.b).peer_alive, timeout=3.0, what="B sees A dead")
    with pytest.raises(tl.CtlError) as refused:
        t.b.ctl("ha", "drill")
    assert "peer is not alive" in refused.value.stderr
    assert hal.role(t.b) == "active"
