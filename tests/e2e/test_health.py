"""End-to-end tests of backend health checks ([service.health_check]).

Topology: tandemlab.lb_lab in nat mode (client A.1 -> unit north0 A.2, south0 B.1 -> backends
B.21..B.23 behind a bridge), plus the unit kernel's own address B.3/24 on the south veth: the
checks run from the unit's kernel (controlplane/health/), and XDP steering leaves the
backends' answers to B.3 to the kernel.

  - a TCP check (every 200 ms, timeout 100 ms, rise 2, fall 2): a backend whose server stops is
    reported down within about fall x interval, new connections all avoid it (and all succeed);
    its server started again, it is up after rise checks and gets new connections again;
  - an HTTP check whose http_body the backends' answer does not contain: every backend down, with
    the reason in `health_error`; the same check with a body they do send: every backend up;
  - on_backend_down (parametrized reset / keep): 18 long-lived echo connections through the VIP;
    one backend fails its check (a separate check server on 7001 stops, its echo server and
    connections stay). reset: the unit logs exactly that backend's connection count as reset,
    each of those connections gets a RST (its next message went to another backend, which
    counts the RSTs it sent) and the others keep every byte; keep: every connection keeps every
    byte. New connections avoid the down backend in both.

A backend's health is read through tandemlab.ha.backend_health (the one reader of the health
fields in `tandemctl --json services list`).
"""

from __future__ import annotations

import itertools
import re
import time

import pytest

import tandemlab as tl
from tandemlab import ha as hal

WEB, WEB_NAT, STRICT = 80, 8080, 81
KERNEL_HOST = 3
INTERVAL_MS, TIMEOUT_MS, RISE, FALL = 200, 100, 2, 2

_ranges = itertools.count()


@pytest.fixture
def nets():
    base = 90 + 3 * (next(_ranges) % 8)
    return f"10.199.{base}", f"10.199.{base + 1}", f"10.199.{base + 2}.10"


def check(kind: str = "tcp", **kw) -> tl.HealthCheck:
    return tl.HealthCheck(kind, interval_ms=INTERVAL_MS, timeout_ms=TIMEOUT_MS, rise=RISE,
                          fall=FALL, **kw)


def start(lab: tl.Lab, nets, services) -> tuple[tl.LbLab, dict[str, tl.LbBackend]]:
    """lb_lab (nat) with the unit kernel's address B.3 on the south veth and an HTTP server on
    every backend (8080), started before tandemd so that the first checks succeed."""
    a, b, vip = nets
    t = tl.lb_lab(lab, "nat", subnet_a=a, subnet_b=b, vip=vip, services=services,
                  conntrack={"capacity": 65536}, start=False)
    lab.addr(t.unit_ns, t.unit_south_if, f"{b}.{KERNEL_HOST}/24")
    servers = {h.name: serve(h) for h in t.backends}
    t.unit.start()
    tl.warm_neighbours(t)
    return t, servers


def serve(h: tl.LbBackendHost, run: int = 1) -> tl.LbBackend:
    return tl.LbBackend(h.ns, h.name, http=[WEB_NAT], log_name=f"server-{h.name}-{run}")


def web(b: str, vip: str, port: int = WEB, name: str = "web", **hc) -> tl.ServiceConfig:
    return tl.ServiceConfig(name, vip, port=port, mode="nat", maglev_size=251,
                            backends=[tl.BackendConfig(f"{b}.{21 + i}", port=WEB_NAT)
                                      for i in range(3)],
                            health_check=check(**hc))


def wait_all(t: tl.LbLab, service: str, want: str, timeout: float) -> dict[str, hal.BackendHealth]:
    last: dict = {}

    def ok():
        got = {h.name: hal.backend_health(t.unit, service, h.ip) for h in t.backends}
        last.update({n: g.raw for n, g in got.items()})
        return got if all(g.health == want for g in got.values()) else None
    try:
        return tl.wait_until(ok, timeout=timeout, interval=0.05,
                             what=f"every backend of {service} to be {want}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last seen: {last}") from None


def test_tcp_check_takes_a_stopped_backend_out_and_back(lab, nets):
    a, b, vip = nets
    t, servers = start(lab, nets, [web(b, vip)])
    wait_all(t, "web", "up", timeout=(RISE + 1) * INTERVAL_MS / 1000 + 3.0)
    burst = tl.http_burst(t.client, t.vip, WEB, 60, tag="all-up")
    assert len(burst.ok) == 60 and set(burst.by_backend()) == set(servers), \
        (burst.by_backend(), burst.failed[:5])

    victim = t.backend("b2")
    servers["b2"].process.stop()
    # Worst case: the server stops just after a check; FALL failures at INTERVAL apart follow.
    limit = ((FALL + 1) * INTERVAL_MS + TIMEOUT_MS) / 1000 + 0.5
    h, took = hal.wait_backend_health(t.unit, "web", victim.ip, "down", timeout=limit + 3.0)
    print(f"\n{victim.ip} down {took * 1000:.0f} ms after its server stopped: {h.error!r}")
    assert took <= limit, f"down after {took:.3f}s, expected within {limit:.3f}s"
    assert h.error, h.raw
    for other in ("b1", "b3"):
        assert hal.backend_health(t.unit, "web", t.backend(other).ip).health == "up"

    burst = tl.http_burst(t.client, t.vip, WEB, 60, tag="b2-down")
    assert len(burst.ok) == 60, f"{len(burst.ok)}/60 succeeded: {burst.failed[:5]}"
    assert "b2" not in burst.by_backend() and set(burst.by_backend()) == {"b1", "b3"}, \
        burst.by_backend()

    servers["b2"] = serve(victim, run=2)
    limit = ((RISE + 1) * INTERVAL_MS + TIMEOUT_MS) / 1000 + 0.5
    h, took = hal.wait_backend_health(t.unit, "web", victim.ip, "up", timeout=limit + 3.0)
    print(f"{victim.ip} up {took * 1000:.0f} ms after its server started again")
    assert took <= limit, f"up after {took:.3f}s, expected within {limit:.3f}s"
    burst = tl.http_burst(t.client, t.vip, WEB, 60, tag="b2-back")
    assert len(burst.ok) == 60, f"{len(burst.ok)}/60 succeeded: {burst.failed[:5]}"
    assert burst.by_backend().get("b2", 0) > 0, burst.by_backend()
    assert len(servers["b2"].log_entries("http")) > 0


def test_http_check_body_mismatch_marks_backends_down(lab, nets):
    a, b, vip = nets
    services = [
        # LbBackend answers "backend=<name> path=<path> ...": this body matches ...
        web(b, vip, kind="http", http_path="/health", http_status=200, http_body="path=/health"),
        # ... this one never does.
        web(b, vip, port=STRICT, name="strict", kind="http", http_path="/health",
            http_status=200, http_body="no-such-text-in-the-answer"),
    ]
    t, servers = start(lab, nets, services)
    timeout = (max(RISE, FALL) + 1) * INTERVAL_MS / 1000 + 3.0
    up = wait_all(t, "web", "up", timeout=timeout)
    down = wait_all(t, "strict", "down", timeout=timeout)
    print("\n" + "\n".join(f"strict {name}: {h.health} {h.error!r}" for name, h in down.items()))
    # The reason names what was missing (e.g. 'body does not contain "..."').
    assert all("no-such-text-in-the-answer" in h.error or "body" in h.error
               for h in down.values()), {n: h.raw for n, h in down.items()}
    assert not any(h.error for h in up.values()), {n: h.raw for n, h in up.items()}
    # The checks really asked the backends (from the unit kernel's address).
    for h in t.backends:
        paths = [e for e in servers[h.name].log_entries("http") if e["path"] == "/health"]
        assert paths and all(e["peer"] == f"{b}.{KERNEL_HOST}" for e in paths), paths[:3]
    burst = tl.http_burst(t.client, t.vip, WEB, 30, tag="web")
    assert len(burst.ok) == 30, burst.failed[:5]


# --- on_backend_down: keep or reset the connections of a backend its check takes down ----------

ECHO, CHECK = 7000, 7001
ECHO_CONNS = 18


def echo_service(b: str, vip: str, policy: str) -> tl.ServiceConfig:
    """echo: VIP:7000 -> backends :7000, checked on another port (7001) served by another
    process, so a backend can fail its check while its echo connections stay open."""
    return tl.ServiceConfig("echo", vip, port=ECHO, mode="nat", maglev_size=251,
                            backends=[tl.BackendConfig(f"{b}.{21 + i}") for i in range(3)],
                            health_check=check(port=CHECK), on_backend_down=policy)


def echo_count_on(t: tl.LbLab, backend_ip: str) -> int:
    return t.unit.ctl("conns", "count", "--service", "echo", "--backend", backend_ip)["count"]


@pytest.mark.parametrize("policy", ["reset", "keep"])
def test_on_backend_down_policy(lab, nets, policy):
    """Long-lived echo connections through the VIP on every backend; one backend's check server
    (a separate process on CHECK) stops while its echo server and connections stay up.
    reset: the unit flushes exactly that backend's connections (logged with their count), their
    next message is balanced afresh to another backend, whose kernel answers RST: the client sees
    each reset; the other connections keep every byte. keep: every connection keeps every byte,
    also those on the down backend. Either way new connections avoid it."""
    a, b, vip = nets
    t = tl.lb_lab(lab, "nat", subnet_a=a, subnet_b=b, vip=vip,
                  services=[echo_service(b, vip, policy)], conntrack={"capacity": 65536},
                  start=False)
    lab.addr(t.unit_ns, t.unit_south_if, f"{b}.{KERNEL_HOST}/24")
    echo = {h.name: tl.LbBackend(h.ns, h.name, echo=[ECHO], log_name=f"echo-{h.name}")
            for h in t.backends}
    checked = {h.name: tl.LbBackend(h.ns, h.name, http=[CHECK], log_name=f"check-{h.name}")
               for h in t.backends}
    t.unit.start()
    tl.warm_neighbours(t)
    wait_all(t, "echo", "up", timeout=(RISE + 1) * INTERVAL_MS / 1000 + 3.0)
    ip = {h.name: h.ip for h in t.backends}

    duration, interval = 6.0, 0.05
    long = tl.EchoClients(t.client, t.vip, ECHO, n=ECHO_CONNS, interval=interval,
                          duration=duration, log_name="echo-long")
    opened = long.opened()
    assert not [c for c in opened if c["error"]], opened
    on = {name: sum(1 for c in opened if c["backend"] == name) for name in echo}
    victim = max(on, key=lambda n: on[n])
    others = [n for n in echo if n != victim]
    assert on[victim] >= 2 and sum(on[n] for n in others) >= 2, on
    assert echo_count_on(t, ip[victim]) == on[victim]
    rsts_before = {n: t.backend(n).ns.snmp()["Tcp"]["OutRsts"] for n in echo}
    time.sleep(0.5)                       # a few rounds on every connection first

    mark = t.unit.log_mark()
    checked[victim].process.stop()
    limit = ((FALL + 1) * INTERVAL_MS + TIMEOUT_MS) / 1000 + 0.5
    h, took = hal.wait_backend_health(t.unit, "echo", ip[victim], "down", timeout=limit + 3.0)
    print(f"\n{policy}: {victim} ({on[victim]} of {ECHO_CONNS} connections) down "
          f"{took * 1000:.0f} ms after its check server stopped: {h.error!r}")
    for n in others:
        assert hal.backend_health(t.unit, "echo", ip[n]).health == "up"
    reset_line = f"backend {ip[victim]}:{ECHO}: "
    if policy == "reset":
        log = t.unit.wait_log(reset_line, "(on_backend_down = reset)", since=mark, timeout=3.0)
        m = re.search(rf"service echo backend {re.escape(ip[victim])}:{ECHO}: (\d+) "
                      r"connection\(s\) reset \(on_backend_down = reset\)(.*)", log)
        assert m, log
        print(f"tandemd: {m.group(0)}")
        assert int(m.group(1)) == on[victim], (m.group(0), on)
        assert "did not answer" not in m.group(2), m.group(0)
    else:
        time.sleep(0.3)
        assert "connection(s) reset" not in t.unit.log_since(mark), t.unit.log_since(mark)
        assert echo_count_on(t, ip[victim]) == on[victim]

    # New connections avoid the down backend.
    probe = tl.EchoClients(t.client, t.vip, ECHO, n=12, interval=0.05, duration=0.3,
                           log_name="echo-probe")
    p = probe.result()["done"]
    assert not [c for c in p if c["error"]], p
    assert victim not in {c["backend"] for c in p} and len({c["backend"] for c in p}) >= 1, p

    res = long.result()
    done, rounds = res["done"], res["rounds"]
    assert rounds >= duration / interval * 0.5, res
    kept = [c for c in done if c["backend"] in others]
    assert not [c for c in kept if c["error"]], kept
    assert all(c["msgs"] == rounds for c in kept), [(c["i"], c["msgs"], rounds) for c in kept]
    slow = [(c["i"], c["backend"], round(c["max_gap"], 3)) for c in kept if c["max_gap"] > 1.0]
    assert not slow, f"round trips stalled: {slow}"
    gone = [c for c in done if c["backend"] == victim]
    assert len(gone) == on[victim]
    for name in others:       # every byte of the kept connections reached their backend
        server_side = sorted(e["bytes"] for e in echo[name].log_entries("echo"))
        client_side = sorted(c["bytes"] for c in kept + p if c["backend"] == name)
        assert server_side == client_side, (name, server_side, client_side)
    if policy == "reset":
        # Each one's next message went to another backend, whose kernel answered RST.
        bad = [c for c in gone if not c["error"] or "Reset" not in c["error"]]
        assert not bad, f"connections on {victim} not reset: {bad}"
        assert all(0 < c["msgs"] < rounds for c in gone), [(c["msgs"], rounds) for c in gone]
        rsts = {n: t.backend(n).ns.snmp()["Tcp"]["OutRsts"] - rsts_before[n] for n in others}
        print(f"RSTs sent by the other backends: {rsts}; errors: "
              f"{sorted({c['error'].split(':', 1)[1].strip() for c in gone})}")
        assert sum(rsts.values()) >= on[victim], rsts
        assert echo_count_on(t, ip[victim]) == 0
    else:
        assert not [c for c in gone if c["error"]], gone
        assert all(c["msgs"] == rounds for c in gone), [(c["i"], c["msgs"]) for c in gone]
        server_side = sorted(e["bytes"] for e in echo[victim].log_entries("echo"))
        assert server_side == sorted(c["bytes"] for c in gone), server_side
    assert t.unit.running()
