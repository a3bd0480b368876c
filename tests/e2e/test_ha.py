"""End-to-end tests of high availability: two tandemd units, active/standby, one VIP group.

Topology (tandemlab.ha_lab, see tandemlab/ha.py): a client and both units' north ports on one
bridge (the VIP N.100 is in the client's subnet, so the client ARPs for it and the active unit
answers), both units' south ports and three backends on another (the backends' default route is
the floating gateway S.1, an address of group 1), and a sync veth between the units (kernel
addresses, adverts over UDP). Adverts also go over the north network from the fast path.
Unit A (id 1) is started first and becomes active; unit B (id 2) then starts as standby.

  - kill -9 of the active: the standby takes over within a second (detection and takeover times
    from its `ha status` are printed: pytest -s), the client's ARP entry for the VIP moves to B
    by gratuitous ARP, and new HTTP connections through the VIP are answered by the backends;
  - the sync link cut: both units raise the sync-path alarm, nobody takes over, traffic flows;
    restored: the alarms clear;
  - the active's north link cut, with [[ha.track]] link = "north0": the standby takes over;
  - a partition on both paths, then healed: exactly one active again within 2 s, and it stays;
  - preemption (A 200, B 100): off, a restarted A stays standby; on, it takes over again after
    the hold-down;
  - `ha maintenance on|off` and `ha failover`, refused when the peer is down;
  - [[ha.track]] service = "web", min_healthy = 3 with checks on a separate port: only A's checks
    of one backend dropped (iptables in the backend) -> A cannot serve, B takes over
    (peer_yielded) while it still sees all three; the rule removed, A's tracking is ok again and
    B keeps the group (preempt off);
  - [[ha.track]] gateway = "north0" (the client as north gateway): the north bridge drops the
    gateway's ARP towards A only (ebtables) -> A's entry expires, B takes over; back afterwards;
  - /metrics of both units parsed strictly (test_metrics.parse_exposition): one active, both
    paths alive, adverts received growing; after kill -9 of the active the survivor counts one
    peer_dead transition, with detection and takeover times equal to its `ha status`.

  - active-active: two groups with opposite preferred owners (nat group 1 on A, fullnat group 2
    with a floating source address on B), preempt on: each unit serves its group, kill -9 of A
    gives B both (both VIPs answer), A restarted takes group 1 back.

Every role and alarm is read through tandemlab.ha.HaStatus (the one reader of `ha status`).
"""

from __future__ import annotations

import itertools
import time
import tomllib

import pytest

import tandemlab as tl
from tandemlab import ha as hal

_ranges = itertools.count()
GARP_COUNT, GARP_INTERVAL_MS = 3, 100          # tandemd's defaults (not written in the config)


@pytest.fixture
def nets():
    """The north, south and sync subnets ("10.199.x") of one ha_lab."""
    base = 120 + 3 * (next(_ranges) % 10)
    return {"subnet_n": f"10.199.{base}", "subnet_s": f"10.199.{base + 1}",
            "subnet_sync": f"10.199.{base + 2}"}


# --- helpers ------------------------------------------------------------------------------------

def http_ok(t: hal.HaLab, n: int = 30, tag: str = "req") -> tl.HttpBurst:
    """n HTTP connections from the client to VIP:80: every one answered by a backend."""
    burst = tl.http_burst(t.client, t.vip, hal.WEB, n, threads=6, timeout=3.0, budget=25.0,
                          tag=tag)
    assert len(burst.ok) == n, (f"{len(burst.ok)}/{n} HTTP requests to the VIP succeeded; "
                                f"failures: {burst.failed[:5]}")
    assert set(burst.by_backend()) <= set(t.servers), burst.by_backend()
    return burst


def one_active_for(t: hal.HaLab, seconds: float, want: dict[str, str]) -> list:
    """Sample both units' roles for `seconds`: every sample must be exactly `want`."""
    samples = hal.watch_roles(t, seconds, interval=0.05)
    assert samples, "no samples"
    bad = [(at, r) for at, r in samples if r != want]
    assert not bad, f"roles left {want} within {seconds}s: {bad[:10]}"
    return samples


def unit_mac(t: hal.HaLab, mac: str | None) -> str:
    return f"{mac} ({t.key_of_mac(mac) or 'neither unit'})"


# --- tests ----------------------------------------------------------------------------------------

@pytest.mark.offline
def test_ha_config_toml():
    cfg = tl.UnitConfig(name="tandem-a", ports=[tl.PortConfig("north0", "x", "10.199.1.2/24")],
                        ha=tl.HaConfig(priority=200, preempt=True, key="k" * 20,
                                       sync_listen="10.199.9.1:8693",
                                       sync_peer="10.199.9.2:8693", data_port="north0",
                                       data_peer="10.199.1.3", garp_count=3,
                                       groups=[tl.HaGroup(1, priority=150, floating_addresses=[
                                           tl.FloatingAddress("south0", "10.199.2.1/24")])],
                                       track=[tl.HaTrack(link="north0"),
                                              tl.HaTrack(service="web", min_healthy=2,
                                                         weight=50)]),
                        services=[tl.ServiceConfig("web", "10.199.1.100", group=1,
                                                   on_backend_down="reset")])
    d = tomllib.loads(cfg.to_toml())
    assert d["ha"] == {
        "priority": 200, "preempt": True, "advert_interval_ms": 10, "dead_intervals": 3,
        "hold_down_ms": 1000, "key": "k" * 20, "sync_listen": "10.199.9.1:8693",
        "sync_peer": "10.199.9.2:8693", "data_port": "north0", "data_peer": "10.199.1.3",
        "garp_count": 3,
        "group": [{"id": 1, "priority": 150,
                   "floating_addresses": [{"port": "south0", "address": "10.199.2.1/24"}]}],
        "track": [{"link": "north0", "weight": 0},
                  {"service": "web", "min_healthy": 2, "weight": 50}]}
    assert d["service"][0]["group"] == 1 and d["service"][0]["on_backend_down"] == "reset"
    assert "ha" not in tomllib.loads(tl.UnitConfig().to_toml())


@pytest.mark.offline
def test_ha_status_reader():
    s = hal.HaStatus({
        "enabled": True, "unit_id": 2, "ready": True,
        "peer": {"unit_id": 1, "alive": True,
                 "paths": {"sync": {"alive": False, "alarm": True},
                           "data": {"alive": True, "alarm": False}}},
        "groups": [{"id": 1, "role": "active", "priority": 200, "effective_priority": 200,
                    "advertised_priority": 200}],
        "tracking": [{"object": "link north0", "ok": False}],
        "last_failover": {"group": 1, "cause": "peer_dead", "from": "standby", "to": "active",
                          "detection_ms": 31, "takeover_ms": 2},
        "transitions": [{"group": 1, "from": "init", "to": "active",
                         "cause": "no_peer_at_start"}]})
    assert s.role() == "active" and s.priority() == 200 and not s.maintenance()
    assert s.peer_alive and s.alarm("sync") and not s.alarm("data")
    assert not s.path_alive("sync") and s.path_alive("data")
    assert s.tracking_ok("north0") is False and s.tracking_ok("south0") is None
    fo = s.last_failover
    assert (fo.cause, fo.from_role, fo.to_role, fo.detection_ms, fo.takeover_ms) == \
        ("peer_dead", "standby", "active", 31, 2)
    assert s.causes() == ["no_peer_at_start"]
    assert hal.HaStatus({"groups": []}).last_failover is None
    with pytest.raises(LookupError):
        s.role(2)


@pytest.mark.lab_only
def test_ha_lab_topology(nets):
    """ha_lab without tandemd: the kernel parts are wired as drawn, and close() removes all."""
    lab = tl.Lab()
    try:
        t = hal.ha_lab(lab, start=False, servers=False, **nets)
        assert t.client.ipv4_addresses(t.client_if) == [f"{t.client_ip}/24"]
        for k, u in t.units.items():
            assert u.ns.ipv4_addresses(u.south_if) == [f"{u.kernel_ip}/24"]
            assert u.ns.ipv4_addresses(u.sync_if) == [f"{u.sync_ip}/30"]
            assert u.ns.ipv4_addresses(u.north_if) == []       # tandemd's address only
            assert tl.ping(u.ns, t.other(k).sync_ip, count=1).received == 1
            for h in t.backends:
                assert tl.ping(h.ns, u.kernel_ip, count=1).received == 1
            c = tomllib.loads(u.unit.config_path.read_text())
            assert c["ha"]["sync_listen"] == f"{u.sync_ip}:{hal.SYNC_PORT}"
            assert c["ha"]["sync_peer"] == f"{t.other(k).sync_ip}:{hal.SYNC_PORT}"
            assert c["ha"]["data_peer"] == t.other(k).north_ip
            assert c["ha"]["group"][0]["floating_addresses"] == \
                [{"port": "south0", "address": f"{t.floating_ip}/24"}]
        for h in t.backends:
            assert h.ns.ip_json("route", "show", "default")[0]["gateway"] == t.floating_ip
        assert len({t.a.north_mac, t.b.north_mac, t.client_mac}) == 3
    finally:
        lab_id = lab.id
        assert lab.close() == []
        assert tl.leftovers(lab_id) == []


def test_both_paths_come_up_without_other_traffic(lab, nets):
    """Two units alone (nobody else sends them a frame) hear each other on both paths: the
    fast path resolves its peer's MAC and its adverts reach the peer."""
    t = hal.ha_lab(lab, warm=False, settle=False, servers=False, **nets)
    hal.wait_paths(t, timeout=3.0)


def test_kill_active_standby_takes_over(lab, nets):
    t = hal.ha_lab(lab, **nets)
    ha = t.a.ha
    http_ok(t, 20, tag="before")
    assert hal.client_neighbour_mac(t) == t.a.north_mac, unit_mac(t, hal.client_neighbour_mac(t))
    s = hal.status(t.b)
    assert s.peer_alive and s.path_alive("sync") and s.path_alive("data"), s
    # Only the active unit answers ARP for the VIP (north) and the floating gateway (south).
    r = tl.arping(t.client, t.client_if, t.vip, count=2)
    assert r.received >= 1 and set(r.reply_macs) == {t.a.north_mac}, r.output
    h = t.backends[0]
    r = tl.arping(h.ns, h.ifname, t.floating_ip, count=2)
    assert r.received >= 1 and set(r.reply_macs) == {t.a.south_mac}, r.output

    watch = hal.ArpWatch(t.client, t.client_if, log_name="arpwatch-client")
    t0 = time.monotonic()
    t.a.kill()
    st = hal.wait_roles(t, {"b": "active"}, timeout=3.0, interval=0.01)["b"]
    elapsed = time.monotonic() - t0
    # The client has sent nothing since: only B's gratuitous ARP can move its entry.
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.b.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be B's north MAC")
    fo = hal.status(t.b).last_failover
    print(f"\nfailover A -> B: B active {elapsed * 1000:.0f} ms after kill -9 (seen over ctl); "
          f"B's last_failover: {fo.raw if fo else None}")
    assert elapsed < 1.0, f"B became active only {elapsed:.3f}s after A was killed"
    assert fo is not None, f"B reports no last_failover: {st.raw}"
    assert fo.cause == "peer_dead" and fo.to_role == "active", fo.raw
    assert fo.detection_ms is not None and fo.takeover_ms is not None, fo.raw
    assert fo.detection_ms <= ha.dead_ms() + 3 * ha.advert_interval_ms, fo.raw
    assert fo.takeover_ms < 1000, fo.raw
    assert not hal.status(t.b).peer_alive
    # garp_count gratuitous ARPs for the VIP from B's north port, garp_interval_ms apart.
    count, interval = GARP_COUNT, GARP_INTERVAL_MS / 1000
    garps = tl.wait_until(lambda: (lambda g: g if len(g) >= count else None)(
        watch.gratuitous(t.vip, since=t0)), timeout=count * interval + 1.5, interval=0.05,
        what=f"{count} gratuitous ARPs for the VIP")
    gaps = [round(b["t"] - a["t"], 3) for a, b in zip(garps, garps[1:])]
    print(f"gratuitous ARPs for the VIP at +{[round(g['t'] - t0, 3) for g in garps]} s")
    assert {g["sender_mac"] for g in garps} == {t.b.north_mac}, garps
    assert len(garps) == count, garps
    assert all(interval * 0.5 <= g <= interval * 3 for g in gaps), gaps

    burst = http_ok(t, 30, tag="after")
    print(f"after the failover: {burst.by_backend()}")
    r = tl.arping(h.ns, h.ifname, t.floating_ip, count=2)
    assert r.received >= 1 and set(r.reply_macs) == {t.b.south_mac}, r.output


def test_sync_link_cut_raises_alarm_without_takeover(lab, nets):
    t = hal.ha_lab(lab, **nets)
    want = {"a": "active", "b": "standby"}
    t.a.link_down("sync")

    def alarms():
        st = {k: hal.status(u) for k, u in t.units.items()}
        return st if all(s.alarm("sync") for s in st.values()) else None
    st = tl.wait_until(alarms, timeout=2.0, interval=0.05, what="the sync-path alarm on both units")
    for k, s in st.items():
        assert s.peer_alive and s.path_alive("data") and not s.alarm("data"), (k, s.raw)
        assert not s.path_alive("sync"), (k, s.raw)
    one_active_for(t, 1.5, want)
    http_ok(t, 30, tag="sync-cut")

    t.a.link_up("sync")

    def cleared():
        st = {k: hal.status(u) for k, u in t.units.items()}
        return st if not any(s.alarm("sync") or s.alarm("data") for s in st.values()) else None
    st = tl.wait_until(cleared, timeout=3.0, interval=0.05, what="the alarms to clear")
    for k, s in st.items():
        assert s.path_alive("sync") and s.path_alive("data"), (k, s.raw)
    one_active_for(t, 0.5, want)
    http_ok(t, 10, tag="restored")


def test_tracked_north_link_down_hands_over(lab, nets):
    t = hal.ha_lab(lab, track=[tl.HaTrack(link="north0", weight=0)], **nets)
    http_ok(t, 10, tag="before")
    assert hal.status(t.a).tracking_ok("north0") is True, hal.status(t.a).raw

    t.a.link_down("north")
    hal.wait_roles(t, {"b": "active"}, timeout=3.0)
    # last_failover is written once the takeover is complete (the first gratuitous ARPs out).
    st = tl.wait_until(lambda: (lambda s: s if s.last_failover else None)(hal.status(t.b)),
                       timeout=1.0, interval=0.02, what="B's last_failover")
    sa = tl.wait_until(lambda: (lambda s: s if s.role() != "active" else None)(hal.status(t.a)),
                       timeout=2.0, interval=0.05, what="A to give up the group")
    print(f"\nA: role {sa.role()}, tracking {sa.tracking}, effective priority "
          f"{sa.effective_priority()}; B's last_failover {st.last_failover}")
    assert sa.tracking_ok("north0") is False, sa.raw
    fo = st.last_failover
    assert fo is not None and fo.to_role == "active", st.raw
    assert fo.cause != "peer_dead", f"the sync link still heard A: {fo.raw}"
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.b.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be B's north MAC")
    http_ok(t, 30, tag="via-b")
    assert hal.client_neighbour_mac(t) == t.b.north_mac


def test_partition_then_heal_leaves_one_active(lab, nets):
    t = hal.ha_lab(lab, **nets)
    t.a.link_down("sync")
    t.a.link_down("north")
    hal.wait_roles(t, {"b": "active"}, timeout=2.0)
    # A hears nobody either: it keeps the group on its side of the partition.
    assert hal.role(t.a) == "active", hal.status(t.a).raw
    http_ok(t, 10, tag="partitioned")

    t.a.link_up("sync")
    t.a.link_up("north")
    t0 = time.monotonic()
    tl.wait_until(lambda: len(hal.actives(t)) == 1, timeout=2.0, interval=0.02,
                  what="exactly one active unit after the heal")
    healed = time.monotonic() - t0
    winner = hal.active_unit(t)
    loser = "a" if winner == "b" else "b"
    print(f"\nhealed: {winner} active {healed * 1000:.0f} ms after the links came back; "
          f"A: {hal.status(t.a).transitions[-3:]}")
    # Equal priorities: the higher unit id (B) wins a dual-active meeting.
    assert winner == "b", hal.roles(t)
    one_active_for(t, 1.5, {winner: "active", loser: "standby"})
    http_ok(t, 20, tag="healed")


def test_heal_where_the_better_unit_kept_the_group_moves_the_clients_back(lab, nets):
    """A (priority 200) is cut off on both paths: B takes over and its gratuitous ARP moves the
    client to B. When the links return, both are active and A, the better one, keeps the group
    while B steps down: A must announce again, or the client keeps sending to B, which no longer
    forwards the VIP (until its ARP entry goes stale, tens of seconds)."""
    t = hal.ha_lab(lab, ha_a={"priority": 200}, ha_b={"priority": 100}, **nets)
    http_ok(t, 5, tag="before")  # the client has an entry for the VIP (on A) to be moved
    t.a.link_down("sync")
    t.a.link_down("north")
    hal.wait_roles(t, {"b": "active"}, timeout=2.0)
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.b.north_mac, timeout=2.0,
                  interval=0.02, what="the client's VIP entry on B (its gratuitous ARP)")
    http_ok(t, 5, tag="partitioned")
    t.a.link_up("sync")
    t.a.link_up("north")
    t0 = time.monotonic()
    hal.wait_roles(t, {"a": "active", "b": "standby"}, timeout=2.0, interval=0.01)
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.a.north_mac, timeout=2.0,
                  interval=0.01, what="the client's VIP entry back on A (A announced again)")
    back = time.monotonic() - t0
    print(f"\nhealed: A kept the group, the client's VIP entry on A {back * 1000:.0f} ms after "
          f"the links came back; B: {hal.status(t.b).transitions[-2:]}")
    t.a.unit.wait_log("announcing it again", timeout=1.0)
    http_ok(t, 20, tag="healed")


@pytest.mark.parametrize("preempt", [False, True], ids=["preempt_off", "preempt_on"])
def test_preemption_after_restart(lab, nets, preempt):
    hold_down_ms = 1000
    t = hal.ha_lab(lab, ha={"preempt": preempt, "hold_down_ms": hold_down_ms},
                   ha_a={"priority": 200}, ha_b={"priority": 100}, **nets)
    assert hal.status(t.a).priority() == 200 and hal.status(t.b).priority() == 100
    http_ok(t, 10, tag="a-first")        # the client now has an ARP entry for the VIP
    t.a.kill()
    hal.wait_roles(t, {"b": "active"}, timeout=2.0)
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.b.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be B's")

    t.a.start()
    started = time.monotonic()
    hal.warm_neighbours(t)
    if not preempt:
        hal.wait_roles(t, {"a": "standby", "b": "active"}, timeout=3.0)
        one_active_for(t, hold_down_ms / 1000 + 1.0, {"a": "standby", "b": "active"})
        http_ok(t, 20, tag="b-kept")
        return
    st = hal.wait_roles(t, {"a": "active", "b": "standby"}, timeout=hold_down_ms / 1000 + 4.0)
    took = time.monotonic() - started
    print(f"\npreempt: A active {took * 1000:.0f} ms after its restart; A's transitions "
          f"{st['a'].transitions}")
    assert "preempt" in st["a"].causes(), st["a"].raw
    one_active_for(t, 1.0, {"a": "active", "b": "standby"})
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.a.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be A's")
    http_ok(t, 20, tag="a-back")


def test_maintenance_and_manual_failover(lab, nets):
    t = hal.ha_lab(lab, **nets)
    t.a.ctl("ha", "maintenance", "on")
    st = hal.wait_roles(t, {"a": "maintenance", "b": "active"}, timeout=3.0)
    assert st["a"].maintenance(), st["a"].raw
    one_active_for(t, 1.0, {"a": "maintenance", "b": "active"})
    http_ok(t, 10, tag="maintenance")

    t.a.ctl("ha", "maintenance", "off")
    st = hal.wait_roles(t, {"a": "standby", "b": "active"}, timeout=3.0)
    assert not st["a"].maintenance(), st["a"].raw
    one_active_for(t, 1.5, {"a": "standby", "b": "active"})     # preempt off: B keeps it

    t.b.ctl("ha", "failover")
    hal.wait_roles(t, {"a": "active", "b": "standby"}, timeout=3.0)
    fo = hal.status(t.a).last_failover
    print(f"\nmanual failover B -> A: A's last_failover {fo.raw if fo else None}")
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.a.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be A's")
    http_ok(t, 20, tag="manual")

    # With the peer gone there is nobody to hand over to: refused, and A keeps the group.
    t.b.kill()
    tl.wait_until(lambda: not hal.status(t.a).peer_alive, timeout=2.0, interval=0.02,
                  what="A to see B dead")
    with pytest.raises(tl.CtlError) as e:
        t.a.ctl("ha", "failover")
    text = f"{e.value.stderr} {e.value.stdout}"
    print(f"failover with the peer down: exit {e.value.code}: {text.strip()}")
    assert e.value.code != 0 and "peer" in text.lower(), text
    assert hal.role(t.a) == "active"
    http_ok(t, 10, tag="alone")


# --- tracking a service's pool and the north gateway; /metrics of both units -------------------

CHECK = 8081                     # health checks go to a separate server on every backend
CHECK_INTERVAL_MS, CHECK_TIMEOUT_MS, RISE, FALL = 200, 100, 2, 2


def health_of(t: hal.HaLab, key: str, service: str = "web") -> dict[str, str]:
    """{backend name: health} of every backend of `service` as unit `key` sees it."""
    return {h.name: hal.backend_health(t.unit(key), service, h.ip).health for h in t.backends}


def wait_health(t: hal.HaLab, key: str, want: dict[str, str], timeout: float,
                service: str = "web") -> dict[str, str]:
    last: dict = {}

    def ok():
        got = health_of(t, key, service)
        last.update(got)
        return got if all(got[n] == w for n, w in want.items()) else None
    try:
        return tl.wait_until(ok, timeout=timeout, interval=0.05,
                             what=f"unit {key}: backends of {service} {want}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last seen: {last}") from None


def wait_status(u: hal.HaUnit, pred, what: str, timeout: float) -> hal.HaStatus:
    return tl.wait_until(lambda: (lambda s: s if pred(s) else None)(hal.status(u)),
                         timeout=timeout, interval=0.02, what=f"{u.name}: {what}")


def test_tracked_pool_seen_unhealthy_by_one_unit_hands_over(lab, nets):
    """[[ha.track]] service = "web", min_healthy = 3 on both units, checks on a separate port.
    Only A's checks of one backend are dropped (iptables in that backend: A's kernel address to
    the check port): A sees 2 healthy < 3 and cannot serve, so B takes over (peer_yielded) while
    B still sees all 3; traffic flows through B to all three. The rule removed, A's pool and
    tracking recover, and (preempt off) B keeps the group."""
    vip = f"{nets['subnet_n']}.{hal.VIP_HOST}"
    services = hal.default_services(vip, nets["subnet_s"], 3)
    services[0].health_check = tl.HealthCheck("tcp", interval_ms=CHECK_INTERVAL_MS,
                                              timeout_ms=CHECK_TIMEOUT_MS, rise=RISE, fall=FALL,
                                              port=CHECK)
    t = hal.ha_lab(lab, services=services, check_port=CHECK,
                   track=[tl.HaTrack(service="web", min_healthy=3, weight=0)], **nets)
    all_up = {h.name: "up" for h in t.backends}
    settle = (RISE + 1) * CHECK_INTERVAL_MS / 1000 + 3.0
    for k in t.units:
        wait_health(t, k, all_up, timeout=settle)
        s = hal.status(t.unit(k))
        assert s.tracking_ok("service web") is True, s.raw
        assert s.effective_priority() == s.priority() == 100, s.raw
    hal.wait_roles(t, {"a": "active", "b": "standby"})
    http_ok(t, 10, tag="before")

    victim = "b2"
    rule = hal.block_checks(t, "a", victim, CHECK)
    t0 = time.monotonic()
    wait_health(t, "a", {victim: "down"},
                timeout=((FALL + 1) * CHECK_INTERVAL_MS + CHECK_TIMEOUT_MS) / 1000 + 3.0)
    hal.wait_roles(t, {"a": "standby", "b": "active"}, timeout=3.0)
    took = time.monotonic() - t0
    sa = wait_status(t.a, lambda s: s.tracking_ok("service web") is False, "tracking failed", 1.0)
    sb = wait_status(t.b, lambda s: s.last_failover is not None, "B's last_failover", 1.0)
    print(f"\nA's checks of {victim} dropped: B active after {took * 1000:.0f} ms; A: tracking "
          f"{sa.tracking}, effective priority {sa.effective_priority()}, advertised "
          f"{sa.advertised_priority()}; B's last_failover {sb.last_failover.raw}; "
          f"the rule dropped {rule.packets()} packet(s)")
    assert rule.packets() > 0
    h = hal.backend_health(t.a, "web", t.backend(victim).ip)
    assert h.error, h.raw
    assert health_of(t, "b") == all_up          # B's view is unchanged: asymmetric
    assert hal.status(t.b).tracking_ok("service web") is True
    assert sa.effective_priority() == 0, sa.raw
    assert sa.transitions[-1]["cause"] == "tracking_degraded", sa.transitions
    assert (sa.transitions[-1]["from"], sa.transitions[-1]["to"]) == ("active", "standby")
    fo = sb.last_failover
    assert (fo.cause, fo.from_role, fo.to_role) == ("peer_yielded", "standby", "active"), fo.raw
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.b.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be B's north MAC")
    burst = http_ok(t, 30, tag="via-b")
    assert set(burst.by_backend()) == set(t.servers), burst.by_backend()   # B balances to all

    rule.remove()
    t1 = time.monotonic()
    wait_health(t, "a", all_up,
                timeout=((RISE + 1) * CHECK_INTERVAL_MS + CHECK_TIMEOUT_MS) / 1000 + 3.0)
    sa = wait_status(t.a, lambda s: s.tracking_ok("service web") is True, "tracking back", 1.0)
    print(f"rule removed: A's pool whole again after {(time.monotonic() - t1) * 1000:.0f} ms")
    assert sa.effective_priority() == 100, sa.raw
    one_active_for(t, 1.5, {"a": "standby", "b": "active"})          # preempt off
    http_ok(t, 10, tag="after")


def test_tracked_gateway_unanswered_by_one_unit_hands_over(lab, nets):
    """[[ha.track]] gateway = "north0" with the client N.1 as both units' north gateway: both
    fine. The north bridge then drops every ARP frame from N.1 towards A only (ebtables,
    nf_tables bridge family): A's probes for the gateway go unanswered, its entry expires
    (reachable 1 s, 3 probes 200 ms apart), the tracked gateway fails and B takes over. The
    rule removed, A resolves the gateway again and its tracking is ok; B keeps the group."""
    reachable_ms, probe_ms, probes = 1000, 200, 3
    gw = f"{nets['subnet_n']}.1"
    t = hal.ha_lab(lab, north_gateway=gw, track=[tl.HaTrack(gateway="north0", weight=0)],
                   unit_kw={"reachable_ms": reachable_ms, "probe_interval_ms": probe_ms,
                            "max_probes": probes}, **nets)
    assert gw == t.client_ip
    for k, u in t.units.items():
        s = wait_status(u, lambda s: s.tracking_ok("gateway north0") is True, "gateway ok", 3.0)
        assert s.effective_priority() == 100, s.raw
        n = u.unit.neighbour(gw, "north0")
        assert n and n["mac"].lower() == t.client_mac, (k, n)
    hal.wait_roles(t, {"a": "active", "b": "standby"})
    http_ok(t, 10, tag="before")

    try:
        rule = hal.block_arp_from(t, gw, "a")
    except tl.CommandError as e:
        pytest.skip(f"ebtables cannot filter ARP on the bridge here: {e}")
    t0 = time.monotonic()
    limit = (reachable_ms + (probes + 1) * probe_ms) / 1000 + 1.0
    hal.wait_roles(t, {"a": "standby", "b": "active"}, timeout=limit + 2.0)
    took = time.monotonic() - t0
    sa = wait_status(t.a, lambda s: s.tracking_ok("gateway north0") is False, "gateway failed",
                     1.0)
    sb = hal.status(t.b)
    print(f"\ngateway unanswered for A: B active after {took * 1000:.0f} ms (limit "
          f"{limit:.1f} s); A: tracking {sa.tracking}, transitions {sa.transitions[-1:]}; B: "
          f"last_failover {sb.last_failover.raw if sb.last_failover else None}; the rule "
          f"dropped {rule.packets()} ARP frame(s)")
    assert took <= limit, f"handed over after {took:.2f}s, expected within {limit:.2f}s"
    assert rule.packets() > 0
    assert sa.effective_priority() == 0, sa.raw
    assert sa.transitions[-1]["cause"] == "tracking_degraded", sa.transitions
    assert sb.tracking_ok("gateway north0") is True, sb.raw
    assert sb.last_failover is not None and sb.last_failover.cause == "peer_yielded", sb.raw
    assert "ha: tracked gateway north0 failed: this unit cannot serve" in t.a.unit.log()
    tl.wait_until(lambda: hal.client_neighbour_mac(t) == t.b.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for the VIP to be B's north MAC")
    http_ok(t, 20, tag="via-b")

    rule.remove()
    sa = wait_status(t.a, lambda s: s.tracking_ok("gateway north0") is True, "gateway back",
                     2 * probe_ms / 1000 + 2.0)
    assert sa.effective_priority() == 100, sa.raw
    n = t.a.unit.neighbour(gw, "north0")
    assert n and n["mac"].lower() == t.client_mac, n
    one_active_for(t, 1.5, {"a": "standby", "b": "active"})          # preempt off
    http_ok(t, 10, tag="after")


def test_metrics_of_both_units(lab, nets):
    """[metrics] on each unit (127.0.0.1 inside its namespace), parsed strictly by
    test_metrics.parse_exposition: one active unit, both paths alive on both, adverts received
    growing; after kill -9 of the active, the survivor's transition, detection and takeover."""
    import test_metrics as tm
    t = hal.ha_lab(lab, unit_kw={"metrics_listen": tm.LISTEN}, **nets)
    ha = t.a.ha
    v = tm.value
    first = {k: tm.scrape(u.ns) for k, u in t.units.items()}
    types = {"tandem_ha_role": "gauge", "tandem_ha_priority": "gauge",
             "tandem_ha_peer_path_alive": "gauge", "tandem_ha_path_alarm": "gauge",
             "tandem_ha_adverts_sent_total": "counter",
             "tandem_ha_adverts_received_total": "counter",
             "tandem_ha_adverts_refused_total": "counter",
             "tandem_ha_transitions_total": "counter", "tandem_ha_tracking_failed": "gauge"}
    for k, f in first.items():
        for name, type_ in types.items():
            assert f.get(name, {}).get("type") == type_, (k, name, f.get(name))
        roles_ = {dict(lb)["role"]: val for lb, val in f["tandem_ha_role"]["samples"].items()
                  if dict(lb)["group"] == "1"}
        assert set(roles_) == {"init", "standby", "active", "maintenance"}, roles_
        assert sum(roles_.values()) == 1, (k, roles_)
        for path in ("sync", "data"):
            assert v(f, "tandem_ha_peer_path_alive", path=path) == 1, (k, path)
            assert v(f, "tandem_ha_path_alarm", path=path) == 0, (k, path)
        assert v(f, "tandem_ha_priority", group="1", kind="effective") == 100
        assert v(f, "tandem_ha_tracking_failed") == 0
        assert all(x == 0 for x in f["tandem_ha_adverts_refused_total"]["samples"].values())
    active = [k for k, f in first.items()
              if v(f, "tandem_ha_role", group="1", role="active") == 1]
    assert active == ["a"], active
    assert v(first["b"], "tandem_ha_role", group="1", role="standby") == 1

    gap = 0.3
    time.sleep(gap)
    second = {k: tm.scrape(u.ns) for k, u in t.units.items()}
    expected = gap * 1000 / ha.advert_interval_ms
    for k in t.units:
        for path in ("sync", "data"):
            for fam in ("tandem_ha_adverts_received_total", "tandem_ha_adverts_sent_total"):
                grown = v(second[k], fam, path=path) - v(first[k], fam, path=path)
                assert grown >= expected * 0.3, (k, fam, path, grown, expected)
    received = {f"{k} {p}": v(second[k], "tandem_ha_adverts_received_total", path=p)
                - v(first[k], "tandem_ha_adverts_received_total", path=p)
                for k in t.units for p in ("sync", "data")}
    print(f"\nadverts received in {gap}s: {received}")
    peer_dead = lambda f: f["tandem_ha_transitions_total"]["samples"].get(  # noqa: E731
        (("cause", "peer_dead"),), 0)
    assert peer_dead(second["b"]) == 0

    t.a.kill()
    hal.wait_roles(t, {"b": "active"}, timeout=3.0)
    st = wait_status(t.b, lambda s: s.last_failover is not None and
                     s.last_failover.cause == "peer_dead", "last_failover peer_dead", 1.0)
    f = tm.scrape_until(t.b.ns, lambda f: "tandem_ha_last_takeover_ms" in f, timeout=3.0)
    detection = v(f, "tandem_ha_last_detection_ms", group="1")
    takeover = v(f, "tandem_ha_last_takeover_ms", group="1", cause="peer_dead")
    print(f"B after kill -9 of A: transitions {f['tandem_ha_transitions_total']['samples']}, "
          f"detection {detection} ms, takeover {takeover} ms; ha status "
          f"{st.last_failover.raw}")
    assert peer_dead(f) == 1, f["tandem_ha_transitions_total"]["samples"]
    assert v(f, "tandem_ha_role", group="1", role="active") == 1
    assert v(f, "tandem_ha_role", group="1", role="standby") == 0
    for path in ("sync", "data"):
        assert v(f, "tandem_ha_peer_path_alive", path=path) == 0, path
    assert ha.dead_ms() * 0.9 <= detection <= ha.dead_ms() + 3 * ha.advert_interval_ms, detection
    assert 0 <= takeover < 1000, takeover
    # The same figures as ha status.
    assert detection == st.last_failover.detection_ms, st.last_failover.raw
    assert takeover == st.last_failover.takeover_ms, st.last_failover.raw
    http_ok(t, 10, tag="after")


# --- active-active ------------------------------------------------------------------------------

def vip_ok(t: hal.HaLab, vip: str, n: int, tag: str) -> None:
    burst = tl.http_burst(t.client, vip, hal.WEB, n, threads=6, timeout=3.0, budget=25.0, tag=tag)
    assert len(burst.ok) == n, f"{len(burst.ok)}/{n} HTTP requests to {vip} succeeded: {burst.failed[:5]}"
    assert set(burst.by_backend()) <= set(t.servers), burst.by_backend()


def test_active_active_each_unit_serves_its_group_and_takes_the_other_on_failure(lab, nets):
    """Two VIP groups with opposite preferred owners, preempt on: group 1 (nat, VIP N.100, the
    backends' gateway S.1 floating) prefers A, group 2 (fullnat, VIP N.101, its source address
    S.6 floating on the south side) prefers B. Each unit serves its own group; kill -9 of A gives
    B both; A restarted takes group 1 back after the hold-down and B keeps group 2."""
    n, s = nets["subnet_n"], nets["subnet_s"]
    vip2, local2 = f"{n}.101", f"{s}.6"
    hosts = [f"{s}.{20 + i}" for i in range(1, 4)]
    services = hal.default_services(f"{n}.{hal.VIP_HOST}", s, 3) + [
        tl.ServiceConfig("web2", vip2, port=hal.WEB, mode="fullnat", group=2, local_addresses=[local2],
                         backends=[tl.BackendConfig(h, port=hal.WEB_NAT) for h in hosts])]

    def groups(prefer: int) -> list[tl.HaGroup]:
        return [tl.HaGroup(1, priority=200 if prefer == 1 else 100,
                           floating_addresses=[tl.FloatingAddress("south0", f"{s}.1/24")]),
                tl.HaGroup(2, priority=200 if prefer == 2 else 100,
                           floating_addresses=[tl.FloatingAddress("south0", f"{local2}/24")])]

    t = hal.ha_lab(lab, services=services, ha={"preempt": True}, ha_a={"groups": groups(1)},
                   ha_b={"groups": groups(2)}, **nets)
    # A started alone and took both groups; B preempts group 2 once its hold-down has passed.
    hal.wait_roles(t, {"a": "standby", "b": "active"}, group=2, timeout=5.0)
    hal.wait_roles(t, {"a": "active", "b": "standby"}, group=1, timeout=1.0)
    vip_ok(t, t.vip, 12, "g1")
    vip_ok(t, vip2, 12, "g2")
    assert hal.client_neighbour_mac(t, t.vip) == t.a.north_mac
    assert hal.client_neighbour_mac(t, vip2) == t.b.north_mac

    t.a.kill()
    hal.wait_roles(t, {"b": "active"}, group=1, timeout=2.0)
    tl.wait_until(lambda: hal.client_neighbour_mac(t, t.vip) == t.b.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for VIP 1 to be B's")
    vip_ok(t, t.vip, 12, "g1-on-b")
    vip_ok(t, vip2, 12, "g2-on-b")

    t.a.start()
    hal.warm_neighbours(t)
    hal.wait_roles(t, {"a": "active", "b": "standby"}, group=1, timeout=5.0)
    hal.wait_roles(t, {"a": "standby", "b": "active"}, group=2, timeout=1.0)
    tl.wait_until(lambda: hal.client_neighbour_mac(t, t.vip) == t.a.north_mac, timeout=1.5,
                  interval=0.02, what="the client's ARP entry for VIP 1 to be A's again")
    vip_ok(t, t.vip, 12, "g1-back")
    vip_ok(t, vip2, 12, "g2-kept")
