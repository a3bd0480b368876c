"""End-to-end tests of XDP steering of the backends' replies (nat and fullnat over AF_XDP, with
tandem_steer on both unit ports).

Topology: tandemlab.lb_lab (see there), AF_XDP on both ports, steering on both (tandemd's
default), and the unit kernel's own address K = B.3/24 on the south veth end that tandemd drives:

    [client] A.1 ── A.2 north0 [unit: tandemd + kernel] south0 B.1, kernel B.3 ── [switch]
                                                                            backends B.21 B.22 B.23

What the south port's tandem_steer must do (ebpf/tandem_xdp.h, rules 2 and 3):
  nat      backend:8080 -> client A.1 is steered by its SOURCE (steer_sources: backend
           address, protocol, backend port), counted as south0/xdp/steered_reply.
  fullnat  backend:8080 -> local address B.5 is steered by its destination, a fullnat local
           address (TANDEM_STEER_FLAG_LOCAL), also counted as steered_reply.
  both     the backends' own traffic to the unit kernel stays the kernel's: ping to K, and the
           reply of the unit kernel's own "health check" of backend:8080 (from K, and from an
           address added to the kernel while tandemd runs: host_addrs is refreshed about once
           a second).
A nat backend added by SIGHUP is steered from then on; one removed keeps its established
connections.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest

import tandemlab as tl

WEB, WEB_NAT = 80, 8080
BULK = 9000
ECHO = 7000
DNS, DNS_NAT = 53, 5353
KERNEL_HOST = 3            # the unit kernel's own address on the south segment: B.3
KERNEL_HOST_LATER = 4      # added while tandemd runs

_ranges = itertools.count()

_HEALTH_CHECK = r"""
import json, socket, sys
src, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((addr, port), timeout=3, source_address=(src, 0))
s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(json.dumps({"reply": data.decode(errors="replace")}))
"""


@pytest.fixture
def nets():
    """(A, B, VIP): fresh 10.199.x /24s, apart from test_lb.py's ranges."""
    base = 60 + 3 * (next(_ranges) % 10)
    return f"10.199.{base}", f"10.199.{base + 1}", f"10.199.{base + 2}.10"


def services(mode: str, b: str, vip: str, web_backends=(21, 22, 23)) -> list[tl.ServiceConfig]:
    kw = {"local_addresses": [f"{b}.5"]} if mode == "fullnat" else {}

    def backends(hosts, port=None):
        return [tl.BackendConfig(f"{b}.{h}", port=port) for h in hosts]
    return [
        tl.ServiceConfig("web", vip, port=WEB, mode=mode, backends=backends(web_backends, WEB_NAT), **kw),
        tl.ServiceConfig("bulk", vip, port=BULK, mode=mode, maglev_size=251,
                         backends=backends((21, 22, 23)), **kw),
        tl.ServiceConfig("echo", vip, port=ECHO, mode=mode, maglev_size=251,
                         backends=backends((21, 22, 23)), **kw),
        tl.ServiceConfig("dns", vip, port=DNS, protocol="udp", mode=mode,
                         backends=backends((21, 22, 23), DNS_NAT), **kw),
    ]


def start(lab: tl.Lab, mode: str, nets, **svc_kw) -> tuple[tl.LbLab, dict[str, tl.LbBackend]]:
    a, b, vip = nets
    t = tl.lb_lab(lab, mode, subnet_a=a, subnet_b=b, vip=vip, services=services(mode, b, vip, **svc_kw),
                  conntrack={"capacity": 65536}, start=False)
    # The unit kernel's own address on the very interface the south port drives.
    lab.addr(t.unit_ns, t.unit_south_if, f"{b}.{KERNEL_HOST}/24")
    t.unit.start()
    tl.warm_neighbours(t)
    servers = {h.name: tl.LbBackend(h.ns, h.name, http=[WEB_NAT], hash=[BULK], echo=[ECHO], udp=[DNS_NAT],
                                    log_name=f"server-{h.name}")
               for h in t.backends}
    return t, servers


def xdp(t: tl.LbLab, port: str = "south0") -> dict:
    return t.unit.xdp_counters(port)


def xdp_delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after}


def drops(c: dict) -> dict:
    keys = ("lb_no_backend", "lb_no_route", "lb_neighbour_unresolved", "ipv4_not_local", "l4_unhandled",
            "l4_malformed", "tx_full")
    return {k: c["drops"].get(k, 0) for k in keys}


def health_check(t: tl.LbLab, src: str, backend_ip: str) -> str:
    cp = t.unit_ns.python(_HEALTH_CHECK, src, backend_ip, str(WEB_NAT), timeout=15)
    return json.loads(cp.stdout)["reply"]


@pytest.mark.parametrize("mode", ["nat", "fullnat"])
def test_replies_reach_tandemd_and_the_kernel_keeps_its_own(lab, nets, mode):
    a, b, vip = nets
    t, servers = start(lab, mode, nets)
    # Steering is on for both ports (the south one included), in tandemd's log and telemetry.
    assert "steered_reply" in xdp(t, "north0") and "steered_reply" in xdp(t), xdp(t)
    assert t.unit_ns.xdp(t.unit_south_if) is not None
    if mode == "nat":
        assert "port south0: XDP steering on" in t.unit.log() and "12 backend source(s)" in t.unit.log(), \
            t.unit.log()
    before_c, before_x = t.unit.counters(), xdp(t)

    # 60 short HTTP connections through the VIP, answered by every backend
    n = 60
    burst = tl.http_burst(t.client, t.vip, WEB, n, threads=6, timeout=5, budget=30, tag=mode)
    assert len(burst.ok) == n, burst.failed[:5]
    assert set(burst.by_backend()) == set(servers), burst.by_backend()
    peer = t.local_address if mode == "fullnat" else t.client_ip
    assert all(r["peer"].split(":")[0] == peer for r in burst.ok), burst.ok[:3]

    # a bulk transfer both ways, sha256-checked end to end
    size, seed = 512 * 1024, 7
    res = tl.tcp_hash_exchange(t.client, t.vip, BULK, size, seed=seed, timeout=20)
    want = tl.expected_sha256(size, seed)
    assert res["sent_sha256"] == want and res["server_sha256"] == want, res
    assert res["echo_len"] == size and res["echo_sha256"] == want, res

    # UDP: every datagram answered by a backend through the VIP
    flows = tl.udp_flows(t.client, t.vip, DNS, flows=12, per_flow=2)
    bad = [f for f in flows if f["error"] or not all(r["ok"] for r in f["replies"])]
    assert not bad, bad

    after_x = xdp(t)
    d = xdp_delta(after_x, before_x)
    # Every reply segment came through XDP as steered_reply: at least the SYN-ACK, the answer
    # and a FIN per HTTP connection, the echoed 512 KiB (>= 350 full segments) and the UDP
    # answers.
    assert d["steered_reply"] >= 3 * n + size // 1500 + 24, d
    after_c = t.unit.counters()
    assert drops(after_c) == drops(before_c), (drops(before_c), drops(after_c))
    assert after_c["handled"]["lb_midflow_flows"] == before_c["handled"].get("lb_midflow_flows", 0)

    # The kernel's own address on the south port still answers a backend ...
    kernel_ip = f"{b}.{KERNEL_HOST}"
    before_x = xdp(t)
    r = tl.ping(t.backends[0].ns, kernel_ip, count=3, interval=0.2, wait=2)
    assert r.received == 3, r.output
    # ... and the unit kernel's own check of backend:8080 (the nat backends' service port) gets
    # its answer: backend:8080 -> kernel address is the host's, not a reply for tandemd.
    reply = health_check(t, kernel_ip, t.backends[1].ip)
    assert "backend=b2" in reply and "path=/health" in reply and f"peer={kernel_ip}:" in reply, reply
    d = xdp_delta(xdp(t), before_x)
    assert d["steered_reply"] == 0, d
    assert d["passed_ipv4"] >= 3 + 3, d   # 3 echo requests, SYN-ACK, answer, FIN at least

    # An address the kernel gets while tandemd runs is exempt within about a second.
    later_ip = f"{b}.{KERNEL_HOST_LATER}"
    lab.addr(t.unit_ns, t.unit_south_if, f"{later_ip}/24")
    time.sleep(2.0)
    reply = health_check(t, later_ip, t.backends[2].ip)
    assert "backend=b3" in reply and f"peer={later_ip}:" in reply, reply

    # and load balancing still works afterwards
    burst = tl.http_burst(t.client, t.vip, WEB, 12, threads=4, timeout=5, budget=20, tag=f"{mode}-again")
    assert len(burst.ok) == 12, burst.failed[:5]

    t.unit.stop()
    final = t.unit.final_xdp()
    assert final["ports"]["south0"]["steered_reply"] >= 3 * n + size // 1500, final


def test_nat_backends_added_and_removed_live(lab, nets):
    """A nat backend added by SIGHUP has its replies steered at once; a backend removed by
    SIGHUP keeps its established connections (its source lingers in steer_sources)."""
    t, servers = start(lab, "nat", nets, web_backends=(21, 22))
    b = nets[1]
    burst = tl.http_burst(t.client, t.vip, WEB, 30, threads=4, timeout=5, budget=20, tag="two")
    assert len(burst.ok) == 30 and set(burst.by_backend()) == {"b1", "b2"}, burst.by_backend()

    t.config.service("web").backends.append(tl.BackendConfig(f"{b}.23", port=WEB_NAT))
    log = t.unit.reload(expect="services: ")
    assert tl.RELOAD_REFUSED not in log, log
    before = xdp(t)
    burst = tl.http_burst(t.client, t.vip, WEB, 60, threads=6, timeout=5, budget=30, tag="three")
    assert len(burst.ok) == 60, burst.failed[:5]
    assert burst.by_backend().get("b3", 0) > 0, burst.by_backend()
    assert xdp_delta(xdp(t), before)["steered_reply"] >= 3 * 60

    # long-lived echo connections on every backend, then b1 leaves every service
    # 24 connections: all of them missing b1 (1 in 3 each) has odds of 6e-5, not 9 connections' 2.6 %
    long = tl.EchoClients(t.client, t.vip, ECHO, n=24, interval=0.05, duration=5.0, log_name="echo-long")
    opened = long.opened()
    assert not [c for c in opened if c["error"]], opened
    assert "b1" in {c["backend"] for c in opened}, opened
    time.sleep(0.5)
    for svc in t.config.services:
        svc.backends = [x for x in svc.backends if x.address != f"{b}.21"]
    log = t.unit.reload(expect="services: ")
    assert tl.RELOAD_REFUSED not in log, log
    burst = tl.http_burst(t.client, t.vip, WEB, 20, threads=4, timeout=5, budget=20, tag="after")
    assert len(burst.ok) == 20 and "b1" not in burst.by_backend(), burst.by_backend()
    res = long.result()
    bad = [c for c in res["done"] if c["error"]]
    assert not bad, bad
    assert all(c["msgs"] == res["rounds"] for c in res["done"]), res
    assert "no longer steers replies" not in t.unit.log()   # far from idle long enough
