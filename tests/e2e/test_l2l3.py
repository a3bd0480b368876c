"""End-to-end L2/L3 behaviour of one tandemd unit on a veth, through AF_XDP and AF_PACKET.

Topology (tandemlab.client_and_unit): a client namespace with a kernel stack and a unit
namespace where tandemd drives the other end of the veth as DPDK port "north0".

    [client] cli<tag> 10.199.N.1/24  <--veth-->  north<tag> [unit: tandemd north0 10.199.N.2/24]
"""

from __future__ import annotations

import signal
import time

import pytest

import tandemlab as tl

DRIVERS = ["af_xdp", "af_packet"]

HANDLED_KEYS = {"arp_replies_sent", "arp_replies_learnt", "arp_requests_sent",
                "icmp_echo_replies_sent"}
DROP_KEYS = {"runt_frame", "l2_not_for_us", "ethertype_unsupported", "arp_malformed",
             "arp_not_for_us", "ipv4_malformed", "ipv4_bad_checksum", "ipv4_fragment",
             "ipv4_not_local", "icmp_malformed", "icmp_bad_checksum", "icmp_unhandled",
             "l4_unhandled"}
PORT_KEYS = {"name", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_dropped"}


def counters_reach(unit: tl.Tandemd, check, timeout: float = 3.0) -> dict:
    """Poll /tandem/counters until check(counters) holds (workers publish asynchronously)."""
    return tl.wait_until(lambda: (lambda c: c if check(c) else None)(unit.counters()),
                         timeout=timeout, interval=0.1, what="counters to reach expected values")


def port_of(counters: dict, name: str) -> dict:
    return next(p for p in counters["ports"] if p["name"] == name)


# --- configuration --------------------------------------------------------------------------

def test_check_config_accepts_lab_config_and_rejects_bad_role(lab):
    cfg = tl.UnitConfig(name="tandem-a", file_prefix=f"{lab.id}-a",
                        ports=[tl.PortConfig("north0", tl.af_xdp("northx"), "10.199.0.2/24",
                                             gateway="10.199.0.1")])
    good = lab.workdir / "good.toml"
    good.write_text(cfg.to_toml())
    cp = tl.check_config(good)
    assert cp.returncode == 0, f"{cp.stdout}\n{cp.stderr}\n--- config ---\n{good.read_text()}"

    cfg.ports[0].role = "sideways"
    bad = lab.workdir / "bad.toml"
    bad.write_text(cfg.to_toml())
    cp = tl.check_config(bad)
    assert cp.returncode == 1, f"bad role accepted:\n{cp.stdout}\n{cp.stderr}"

    broken = lab.workdir / "broken.toml"
    broken.write_text("[unit\nid = 1\n")
    cp = tl.check_config(broken)
    assert cp.returncode == 1, f"TOML syntax error accepted:\n{cp.stdout}\n{cp.stderr}"
    assert "broken.toml" in cp.stderr, cp.stderr


# --- readiness and telemetry shape ----------------------------------------------------------

def test_ready_and_telemetry_schema(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet)
    assert "READY=1" in t.unit.ready_message.splitlines()
    assert tl.READY_LOG_LINE in t.unit.log()
    c = t.unit.counters()
    assert [p["name"] for p in c["ports"]] == ["north0"]
    port = c["ports"][0]
    assert PORT_KEYS <= port.keys(), f"missing port keys {PORT_KEYS - port.keys()}"
    assert HANDLED_KEYS <= c["handled"].keys(), f"missing {HANDLED_KEYS - c['handled'].keys()}"
    assert DROP_KEYS <= c["drops"].keys(), f"missing {DROP_KEYS - c['drops'].keys()}"
    for section in ("handled", "drops"):
        assert all(isinstance(v, int) and v >= 0 for v in c[section].values()), c[section]
    assert isinstance(t.unit.neighbours(), list)
    info = t.unit.info()
    assert info.get("unit_name") == "tandem-a" and info.get("ports") == 1, info


# --- ICMP echo and ARP, through both kinds of port ------------------------------------------

@pytest.mark.parametrize("driver", DRIVERS)
def test_ping_unit(lab, subnet, driver):
    t = tl.client_and_unit(lab, driver=driver, subnet=subnet)
    before = t.unit.counters()

    r = tl.ping(t.client, t.unit_ip, count=5, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (5, 5), r.output

    # counters are updated per burst and read without a snapshot: wait for every delta
    b_port = port_of(before, t.port)

    def deltas(c):
        p = port_of(c, t.port)
        return {"icmp_echo_replies_sent": c["handled"]["icmp_echo_replies_sent"]
                - before["handled"]["icmp_echo_replies_sent"],
                **{k: p[k] - b_port[k] for k in ("rx_packets", "tx_packets", "rx_bytes",
                                                 "tx_bytes")}}
    want = {"icmp_echo_replies_sent": 5, "rx_packets": 5, "tx_packets": 5,  # + ARP
            "rx_bytes": 5 * 98, "tx_bytes": 5 * 98}                         # 98-byte frames
    after = counters_reach(t.unit, lambda c: all(deltas(c)[k] >= v for k, v in want.items()))
    d = deltas(after)
    assert d["icmp_echo_replies_sent"] == 5, d
    a_port = port_of(after, t.port)
    assert a_port["tx_dropped"] == b_port["tx_dropped"]

    # the client's kernel resolved the unit's address to the port's MAC
    n = t.client.neighbour(t.unit_ip, t.client_if)
    assert n is not None and n.get("lladdr") == t.unit_mac, n


@pytest.mark.parametrize("driver", DRIVERS)
def test_arp_reply(lab, subnet, driver):
    t = tl.client_and_unit(lab, driver=driver, subnet=subnet)
    before = t.unit.counters()

    r = tl.arping(t.client, t.client_if, t.unit_ip, count=3, deadline=5)
    assert r.received == 3, r.output
    assert r.reply_macs == [t.unit_mac] * 3, r.output
    after = counters_reach(t.unit, lambda c: c["handled"]["arp_replies_sent"]
                           - before["handled"]["arp_replies_sent"] >= 3)
    assert after["handled"]["arp_replies_sent"] - before["handled"]["arp_replies_sent"] >= 3

    # the kernel's own resolution (one echo) puts the unit's MAC in the client's table
    assert tl.ping(t.client, t.unit_ip, count=1).received == 1
    n = t.client.neighbour(t.unit_ip, t.client_if)
    assert n is not None and n.get("lladdr") == t.unit_mac, n
    assert set(n.get("state", [])) & {"REACHABLE", "STALE", "DELAY", "PROBE"}, n


@pytest.mark.parametrize("driver", DRIVERS)
def test_unit_learns_client(lab, subnet, driver):
    t = tl.client_and_unit(lab, driver=driver, subnet=subnet)
    r = tl.ping(t.client, t.unit_ip, count=2, interval=0.2)
    assert r.received == 2, r.output
    n = t.unit.wait_neighbour(t.client_ip, mac=t.client_mac, timeout=3)
    assert n["port"] == t.port
    assert n["mac"].lower() == t.client_mac
    assert n["state"] == "reachable"
    assert 0 <= n["age_ms"] < 30000


# --- gateway resolution ----------------------------------------------------------------------

def test_gateway_resolved_without_client_traffic(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, gateway=True)
    n = t.unit.wait_neighbour(t.client_ip, mac=t.client_mac, timeout=5)
    assert n["port"] == t.port
    c = t.unit.counters()
    assert c["handled"]["arp_requests_sent"] >= 1, c["handled"]
    # the client's kernel only answered: everything it sent was an ARP reply
    stats = t.client.ip_json("-s", "link", "show", "dev", t.client_if)[0]["stats64"]
    assert stats["tx"]["packets"] <= c["handled"]["arp_requests_sent"], (stats, c["handled"])
    # ... and it learnt the unit from the request
    cn = t.client.neighbour(t.unit_ip, t.client_if)
    assert cn is not None and cn.get("lladdr") == t.unit_mac, cn


# --- drops -----------------------------------------------------------------------------------

def test_not_local_ipv4_is_dropped(lab, subnet):
    # without XDP steering: with it, frames to addresses the unit does not own never reach
    # tandemd (the kernel gets them; test_xdp.py covers that)
    t = tl.client_and_unit(lab, subnet=subnet, port_kw={"xdp_steering": False})
    stranger = t.subnet_host(77)     # nobody owns it; the client sends it to the unit's MAC
    tl.static_neighbour(t.client, t.client_if, stranger, t.unit_mac)
    before = t.unit.counters()

    r = tl.ping(t.client, stranger, count=3, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (3, 0), r.output

    after = counters_reach(t.unit, lambda c: c["drops"]["ipv4_not_local"]
                           - before["drops"]["ipv4_not_local"] >= 3)
    assert after["drops"]["ipv4_not_local"] - before["drops"]["ipv4_not_local"] == 3
    assert after["handled"]["icmp_echo_replies_sent"] == before["handled"]["icmp_echo_replies_sent"]
    assert port_of(after, t.port)["tx_packets"] == port_of(before, t.port)["tx_packets"]


# --- lifecycle -------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_gracefully_with_final_counters(lab, subnet, sig):
    t = tl.client_and_unit(lab, subnet=subnet)
    assert tl.ping(t.client, t.unit_ip, count=2).received == 2
    tl.wait_until(lambda: t.unit.counters()["handled"]["icmp_echo_replies_sent"] >= 2,
                  timeout=3, what="echo replies counted")

    start = time.monotonic()
    t.unit.signal(sig)
    rc = t.unit.process.proc.wait(timeout=10)
    took = time.monotonic() - start
    assert rc == 0, f"exit status {rc}"
    assert took < 5, f"took {took:.1f}s to stop"

    block = t.unit.final_counters_log()
    assert block, "no 'final counters' line in the log"
    values = tl.parse_counter_lines(block)
    assert "icmp_echo_replies_sent" in values, f"final counters lack icmp_echo_replies_sent:\n{block}"
    assert values["icmp_echo_replies_sent"] >= 2, block


def test_frames_for_others_are_not_answered(lab, subnet):
    """ARP for an address the unit does not own, and unicast frames to another MAC, get no
    answer and are counted as arp_not_for_us and l2_not_for_us (without XDP steering, which
    would pass both to the kernel before tandemd sees them)."""
    t = tl.client_and_unit(lab, subnet=subnet, port_kw={"xdp_steering": False})
    before = t.unit.counters()

    a = tl.arping(t.client, t.client_if, t.subnet_host(78), count=2, deadline=2)
    assert a.received == 0, a.output

    other_mac = "02:00:00:00:00:99"
    tl.static_neighbour(t.client, t.client_if, t.subnet_host(79), other_mac)
    r = tl.ping(t.client, t.subnet_host(79), count=2, interval=0.2, wait=1)
    assert r.received == 0, r.output

    def delta(c, key):
        return c["drops"][key] - before["drops"][key]
    after = counters_reach(t.unit, lambda c: delta(c, "arp_not_for_us") >= a.sent
                           and delta(c, "l2_not_for_us") >= 2)
    assert delta(after, "arp_not_for_us") == a.sent, (a.sent, after["drops"])
    assert delta(after, "l2_not_for_us") == 2, after["drops"]
    assert after["handled"]["arp_replies_sent"] == before["handled"]["arp_replies_sent"]
    assert port_of(after, t.port)["tx_packets"] == port_of(before, t.port)["tx_packets"]
