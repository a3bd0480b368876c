"""End-to-end tests of backend health checks ([service.health_check]).

Topology: tandemlab.lb_lab in nat mode (client A.1 -> unit north0 A.2, south0 B.1 -> backends
B.21..B.23 behind a bridge), plus the unit kernel's own address B.3/24 on the south veth: the
checks run from the unit's kernel (controlplane/health/), and XDP steering leaves the
backends' answers to B.3 to the kernel.

  - a TCP check (every 200 ms, timeout 100 ms, rise 2, fall 2): a backend whose server stops is
    reported down within about fall x interval, new connections all avoid it (and all succeed);
    its server started again, it is up after rise checks and gets new connections again;
  - an HTTP check whose http_body the backends' answer does not contain: every backend down, with
    the reason in `health_error`; the same check with a body they do send: every backend up.

A backend's health is read through tandemlab.ha.backend_health (the one reader of the health
fields in `tandemctl --json services list`).
"""

from __future__ import annotations

import itertools

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
