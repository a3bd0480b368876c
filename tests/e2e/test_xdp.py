"""End-to-end tests of XDP steering on an AF_XDP port: the kernel and tandemd share one interface,
addresses and the source blocklist change at run time (SIGHUP), and the steering program does not
outlive tandemd.

Topology (tandemlab.client_and_unit with kernel_host=3): the unit namespace's kernel holds its own
address on the very veth end that tandemd drives through AF_XDP.

    [client] cli<tag> 10.199.N.1/24  <--veth-->  north<tag> [unit: tandemd north0 10.199.N.2/24,
                                                              kernel 10.199.N.3/24, tandem_steer]

tandem_steer redirects IPv4 to tandemd's addresses and ARP for them to tandemd, and passes the
rest to the kernel; its per-verdict counters are /tandem/counters "north0/xdp/<verdict>"
(port["xdp"] in tandemlab). They are counted in XDP, before tandemd or the kernel see the frame,
so they are exact as soon as the traffic has been sent; tandemd's own counters are published per
burst and are polled for.
"""

from __future__ import annotations

import copy
import re
import time

import pytest
import tomllib

import tandemlab as tl

VERDICTS = {"steered_ipv4", "steered_arp", "passed_ipv4", "passed_arp", "passed_other",
            "passed_malformed", "dropped_blocklist"}
ECHO_FRAME = 98          # bytes of a default ping request frame: 14 + 20 + 8 + 56
KERNEL_HOST = 3          # the unit kernel's own address: <subnet>.3


def counters_reach(unit: tl.Tandemd, check, timeout: float = 3.0) -> dict:
    """Poll /tandem/counters until check(counters) holds (workers publish asynchronously)."""
    return tl.wait_until(lambda: (lambda c: c if check(c) else None)(unit.counters()),
                         timeout=timeout, interval=0.1, what="counters to reach expected values")


def port_of(counters: dict, name: str = "north0") -> dict:
    return next(p for p in counters["ports"] if p["name"] == name)


def xdp_of(counters: dict, name: str = "north0") -> dict:
    return port_of(counters, name)["xdp"]


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}


def handled_delta(after: dict, before: dict) -> dict:
    return delta(after["handled"], before["handled"])


def flush_neighbour(ns: tl.Netns, ifname: str, address: str) -> None:
    ns.ip("neigh", "flush", "to", address, "dev", ifname, check=False)


# --- offline / config -------------------------------------------------------------------------

@pytest.mark.offline
def test_xdp_config_keys_and_report_parsers():
    cfg = tl.UnitConfig(ports=[tl.PortConfig("north0", tl.af_xdp("northx"), "10.199.0.2/24",
                                             secondary_addresses=["10.199.0.9/24"],
                                             xdp_steering=True)],
                        xdp_blocklist=["10.199.0.128/25"])
    doc = tomllib.loads(cfg.to_toml())
    assert doc["xdp"] == {"blocklist": ["10.199.0.128/25"]}
    assert doc["port"][0]["secondary_addresses"] == ["10.199.0.9/24"]
    assert doc["port"][0]["xdp_steering"] is True
    plain = tomllib.loads(tl.UnitConfig(ports=[tl.PortConfig("n", "d", "10.0.0.2/24")]).to_toml())
    assert "xdp" not in plain and "xdp_steering" not in plain["port"][0]
    assert tomllib.loads(tl.UnitConfig(xdp_blocklist=[]).to_toml())["xdp"] == {"blocklist": []}

    block = """2026-11-25T08:27:48.965 info final counters
2026-11-25T08:27:48.965 info   handled: arp_replies_sent=1 icmp_echo_replies_sent=2
2026-11-25T08:27:48.965 info   xdp north0: steered_ipv4=2 steered_arp=1 passed_ipv4=0 passed_arp=0 passed_other=0 passed_malformed=0 dropped_blocklist=4
2026-11-25T08:27:48.965 info   xdp north0 blocklist 10.199.0.128/25: 4 packets 392 bytes
"""
    x = tl.parse_final_xdp(block)
    assert x["ports"] == {"north0": {"steered_ipv4": 2, "steered_arp": 1, "passed_ipv4": 0,
                                     "passed_arp": 0, "passed_other": 0, "passed_malformed": 0,
                                     "dropped_blocklist": 4}}
    assert x["blocklist"] == [{"port": "north0", "prefix": "10.199.0.128/25", "packets": 4,
                               "bytes": 392}]
    assert tl.parse_final_xdp("nothing here") == {"ports": {}, "blocklist": []}

    assert tl.parse_blocklist(["north0 10.199.0.128/25 4 392"]) == [
        {"port": "north0", "prefix": "10.199.0.128/25", "packets": 4, "bytes": 392}]
    with pytest.raises(tl.TelemetryError):
        tl.parse_blocklist(["north0 10.199.0.128/25 4"])


def test_check_config_xdp_keys(lab):
    """--check-config accepts secondary_addresses and [xdp] blocklist, and rejects what the
    reload tests rely on being refused."""
    def check(cfg: tl.UnitConfig, name: str):
        path = lab.workdir / name
        path.write_text(cfg.to_toml())
        return tl.check_config(path)

    def unit(**port_kw) -> tl.UnitConfig:
        return tl.UnitConfig(file_prefix=f"{lab.id}-c",
                             ports=[tl.PortConfig("north0", tl.af_xdp("northx"), "10.199.0.2/24",
                                                  **port_kw)])

    good = unit(secondary_addresses=["10.199.0.9/24", "10.199.0.10/24"])
    good.xdp_blocklist = ["10.199.0.128/25", "192.0.2.0/24"]
    cp = check(good, "good.toml")
    assert cp.returncode == 0, f"{cp.stdout}\n{cp.stderr}"

    host_bits = unit()
    host_bits.xdp_blocklist = ["10.199.0.129/25"]
    cp = check(host_bits, "host_bits.toml")
    assert cp.returncode == 1 and "host bits" in cp.stderr, cp.stderr

    too_many = unit(secondary_addresses=[f"10.199.0.{10 + i}/24" for i in range(8)])
    cp = check(too_many, "too_many.toml")
    assert cp.returncode == 1 and "secondary_addresses" in cp.stderr, cp.stderr

    twice = unit(secondary_addresses=["10.199.0.2/24"])
    cp = check(twice, "twice.toml")
    assert cp.returncode == 1 and "twice" in cp.stderr, cp.stderr

    steer_af_packet = tl.UnitConfig(ports=[tl.PortConfig("north0", tl.af_packet("northx"),
                                                         "10.199.0.2/24", xdp_steering=True)])
    cp = check(steer_af_packet, "af_packet.toml")
    assert cp.returncode == 1 and "xdp_steering" in cp.stderr, cp.stderr


# --- 1. the kernel and tandemd share the interface ---------------------------------------------

def test_kernel_and_tandemd_share_the_interface(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST)
    x = t.unit_ns.xdp(t.unit_if)
    assert x is not None and x["prog"]["name"] == "tandem_steer", x
    start = t.unit.counters()
    assert VERDICTS <= xdp_of(start).keys(), xdp_of(start)

    # tandemd's fast-path address: ICMP and ARP are steered to tandemd, which answers
    r = tl.ping(t.client, t.unit_ip, count=5, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (5, 5), r.output
    a = tl.arping(t.client, t.client_if, t.unit_ip, count=3, deadline=5)
    assert a.received == 3 and a.reply_macs == [t.unit_mac] * 3, a.output
    fast = counters_reach(t.unit, lambda c: handled_delta(c, start)["icmp_echo_replies_sent"] >= 5
                          and handled_delta(c, start)["arp_replies_sent"] >= a.sent)
    d = delta(xdp_of(fast), xdp_of(start))
    assert d["steered_ipv4"] == 5, d
    assert d["steered_arp"] >= a.sent, d          # + the client kernel's own resolution
    assert d["passed_ipv4"] == 0 and d["dropped_blocklist"] == 0, d
    assert handled_delta(fast, start)["icmp_echo_replies_sent"] == 5

    # the kernel's address on the same interface: passed to the kernel, which answers itself
    r = tl.ping(t.client, t.kernel_ip, count=5, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (5, 5), r.output
    a = tl.arping(t.client, t.client_if, t.kernel_ip, count=3, deadline=5)
    assert a.received == 3 and a.reply_macs == [t.unit_mac] * 3, a.output
    time.sleep(0.3)                                 # let a (wrongly) steered frame be counted
    kern = t.unit.counters()
    d = delta(xdp_of(kern), xdp_of(fast))
    assert d["passed_ipv4"] == 5, d
    assert d["passed_arp"] >= a.sent, d
    assert d["steered_ipv4"] == 0 and d["steered_arp"] == 0, d
    h = handled_delta(kern, fast)
    assert h["icmp_echo_replies_sent"] == 0 and h["arp_replies_sent"] == 0, h

    # a TCP service of the kernel through the same interface, both directions
    size, seed = 256 * 1024, 7
    server = tl.TcpHashServer(t.unit_ns, t.kernel_ip, 8080, log_name="tcphash")
    res = tl.tcp_hash_exchange(t.client, t.kernel_ip, 8080, size, seed=seed)
    want = tl.expected_sha256(size, seed)
    assert res["local"] == t.client_ip, res
    assert res["sent_sha256"] == want and res["server_sha256"] == want, res
    assert res["echo_len"] == size and res["echo_sha256"] == want, res
    assert server.connections() == [{"peer": t.client_ip, "received": size, "sha256": want}]
    time.sleep(0.3)
    tcp = t.unit.counters()
    d = delta(xdp_of(tcp), xdp_of(kern))
    assert d["passed_ipv4"] >= size // 1500, d     # at least the upload's full-size segments
    assert d["steered_ipv4"] == 0, d
    assert delta(tcp["drops"], kern["drops"]).get("l4_unhandled") == 0, tcp["drops"]

    # everything tandemd received came through the steering program
    def received_matches(c):
        steered = sum(delta(xdp_of(c), xdp_of(start))[k] for k in ("steered_ipv4", "steered_arp"))
        return delta(port_of(c), port_of(start))["rx_packets"] >= steered
    end = counters_reach(t.unit, received_matches)
    steered = sum(delta(xdp_of(end), xdp_of(start))[k] for k in ("steered_ipv4", "steered_arp"))
    assert delta(port_of(end), port_of(start))["rx_packets"] == steered, (port_of(end),
                                                                           xdp_of(end))


# --- 2. an address added and removed at run time ----------------------------------------------

def test_secondary_address_added_and_removed_by_sighup(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST)
    pid = t.unit.pid
    extra = t.subnet_host(9)
    port = t.unit.config.ports[0]

    a = tl.arping(t.client, t.client_if, extra, count=2, deadline=2)
    assert a.received == 0, a.output
    r = tl.ping(t.client, extra, count=2, interval=0.2, wait=1)
    assert r.received == 0, r.output

    # add it: answered at once, same process
    port.secondary_addresses = [f"{extra}/24"]
    log = t.unit.reload(expect="port north0: addresses")
    line = next(l for l in log.splitlines() if "port north0: addresses" in l)
    old, new = line.split("addresses", 1)[1].split("->")
    assert extra not in old and f"{extra}/24" in new and f"{t.unit_ip}/24" in new, line
    assert t.unit.running() and t.unit.pid == pid
    assert t.unit.log().count(tl.READY_LOG_LINE) == 1

    flush_neighbour(t.client, t.client_if, extra)   # forget the failed resolution
    before = t.unit.counters()
    r = tl.ping(t.client, extra, count=3, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (3, 3), r.output
    a = tl.arping(t.client, t.client_if, extra, count=2, deadline=5)
    assert a.received == 2 and a.reply_macs == [t.unit_mac] * 2, a.output
    after = counters_reach(t.unit,
                           lambda c: handled_delta(c, before)["icmp_echo_replies_sent"] >= 3)
    assert handled_delta(after, before)["icmp_echo_replies_sent"] == 3
    assert delta(xdp_of(after), xdp_of(before))["steered_ipv4"] == 3
    assert tl.ping(t.client, t.unit_ip, count=2).received == 2          # the primary still works

    # remove it again: neither tandemd nor the XDP program takes it any more
    port.secondary_addresses = []
    log = t.unit.reload(expect="port north0: addresses")
    line = next(l for l in log.splitlines() if "port north0: addresses" in l)
    old, new = line.split("addresses", 1)[1].split("->")
    assert f"{extra}/24" in old and extra not in new, line
    assert t.unit.pid == pid

    a = tl.arping(t.client, t.client_if, extra, count=2, deadline=2)
    assert a.received == 0, a.output
    # send IPv4 to it at the unit's MAC anyway: XDP passes it to the kernel, which does not own it
    tl.static_neighbour(t.client, t.client_if, extra, t.unit_mac)
    before = t.unit.counters()
    r = tl.ping(t.client, extra, count=3, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (3, 0), r.output
    time.sleep(0.3)
    after = t.unit.counters()
    d = delta(xdp_of(after), xdp_of(before))
    assert d["passed_ipv4"] == 3 and d["steered_ipv4"] == 0, d
    assert handled_delta(after, before)["icmp_echo_replies_sent"] == 0
    assert delta(after["drops"], before["drops"])["ipv4_not_local"] == 0

    assert tl.ping(t.client, t.unit_ip, count=2).received == 2
    assert tl.ping(t.client, t.kernel_ip, count=2).received == 2
    assert t.unit.running() and t.unit.pid == pid


# --- 3. the source blocklist, and its changes at run time --------------------------------------

def test_blocklist_drops_in_xdp_and_changes_live(lab, subnet):
    blocked_prefix = f"{subnet}.128/25"
    blocked_src = f"{subnet}.200"
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST,
                           xdp_blocklist=[blocked_prefix])
    lab.addr(t.client, t.client_if, f"{blocked_src}/24")
    client_prefix = f"{t.client_ip}/32"

    assert t.unit.blocklist() == [{"port": "north0", "prefix": blocked_prefix, "packets": 0,
                                   "bytes": 0}]
    before = t.unit.counters()
    r = tl.ping(t.client, t.unit_ip, count=4, interval=0.2, wait=1, ifname=blocked_src)
    assert (r.transmitted, r.received) == (4, 0), r.output
    hits = t.unit.blocklist_hits(blocked_prefix)
    assert (hits["packets"], hits["bytes"]) == (4, 4 * ECHO_FRAME), hits
    # the kernel's own address is behind the same program
    r = tl.ping(t.client, t.kernel_ip, count=2, interval=0.2, wait=1, ifname=blocked_src)
    assert (r.transmitted, r.received) == (2, 0), r.output
    assert t.unit.blocklist_hits(blocked_prefix)["packets"] == 6
    # other sources are not affected
    r = tl.ping(t.client, t.unit_ip, count=3, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (3, 3), r.output
    after = counters_reach(t.unit,
                           lambda c: handled_delta(c, before)["icmp_echo_replies_sent"] >= 3)
    d = delta(xdp_of(after), xdp_of(before))
    assert d["dropped_blocklist"] == 6 and d["steered_ipv4"] == 3 and d["passed_ipv4"] == 0, d
    assert handled_delta(after, before)["icmp_echo_replies_sent"] == 3

    # remove the prefix: the blocked source gets answers at once
    t.unit.config.xdp_blocklist = []
    log = t.unit.reload(expect="xdp blocklist:")
    assert f"xdp blocklist: {blocked_prefix} -> none" in log, log
    assert t.unit.blocklist() == []
    r = tl.ping(t.client, t.unit_ip, count=3, interval=0.2, wait=1, ifname=blocked_src)
    assert (r.transmitted, r.received) == (3, 3), r.output

    # block the client's main address instead
    t.unit.config.xdp_blocklist = [client_prefix]
    log = t.unit.reload(expect="xdp blocklist:")
    assert f"xdp blocklist: none -> {client_prefix}" in log, log
    r = tl.ping(t.client, t.unit_ip, count=3, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (3, 0), r.output
    assert t.unit.blocklist() == [{"port": "north0", "prefix": client_prefix, "packets": 3,
                                   "bytes": 3 * ECHO_FRAME}]
    r = tl.ping(t.client, t.unit_ip, count=2, interval=0.2, wait=1, ifname=blocked_src)
    assert (r.transmitted, r.received) == (2, 2), r.output

    # swap back: the re-added prefix counts from zero (its counter slot was just freed)
    t.unit.config.xdp_blocklist = [blocked_prefix]
    log = t.unit.reload(expect="xdp blocklist:")
    assert f"xdp blocklist: {client_prefix} -> {blocked_prefix}" in log, log
    assert t.unit.blocklist() == [{"port": "north0", "prefix": blocked_prefix, "packets": 0,
                                   "bytes": 0}]
    r = tl.ping(t.client, t.unit_ip, count=2, interval=0.2, wait=1, ifname=blocked_src)
    assert (r.transmitted, r.received) == (2, 0), r.output
    assert tl.ping(t.client, t.unit_ip, count=2, interval=0.2).received == 2
    assert t.unit.blocklist_hits(blocked_prefix)["packets"] == 2

    # the final counters block reports the same
    t.unit.stop()
    final = t.unit.final_xdp()
    assert final["blocklist"] == [{"port": "north0", "prefix": blocked_prefix, "packets": 2,
                                   "bytes": 2 * ECHO_FRAME}], t.unit.final_counters_log()
    assert final["ports"]["north0"]["dropped_blocklist"] == 6 + 3 + 2, t.unit.final_counters_log()


# --- 4. a bad config on SIGHUP changes nothing --------------------------------------------------

def test_bad_reload_changes_nothing(lab, subnet):
    extra, wanted = f"{subnet}.9", f"{subnet}.10"
    blocked = f"{subnet}.128/25"
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST,
                           port_kw={"secondary_addresses": [f"{extra}/24"]},
                           xdp_blocklist=[blocked])
    pid = t.unit.pid
    good_toml = t.unit.config.to_toml()
    for ip in (t.unit_ip, extra):
        assert tl.ping(t.client, ip, count=2, interval=0.2).received == 2

    # a TOML syntax error
    log = t.unit.reload(text=good_toml + "\n[port\n", expect=tl.RELOAD_REFUSED)
    assert t.unit.config_path.name in log, log

    # valid TOML, invalid values: an address out of range, a blocklist prefix with host bits;
    # the valid part (a new secondary address, an empty blocklist) must not be applied either
    bad = copy.deepcopy(t.unit.config)
    bad.ports[0].secondary_addresses = [f"{extra}/24", f"{wanted}/24", f"{subnet}.300/24"]
    bad.xdp_blocklist = [f"{subnet}.129/25"]
    log = t.unit.reload(text=bad.to_toml(), expect=tl.RELOAD_REFUSED)
    m = re.search(r"reload refused: (\d+) error", log)
    assert m and int(m.group(1)) == 2, log
    assert "port north0: addresses" not in log and "xdp blocklist:" not in log, log

    assert t.unit.running() and t.unit.pid == pid
    for ip in (t.unit_ip, extra, t.kernel_ip):
        r = tl.ping(t.client, ip, count=2, interval=0.2, wait=1)
        assert r.received == 2, f"{ip}: {r.output}"
    a = tl.arping(t.client, t.client_if, wanted, count=2, deadline=2)
    assert a.received == 0, a.output
    assert [e["prefix"] for e in t.unit.blocklist()] == [blocked]

    # a change that needs a restart is logged and not applied; the rest keeps working
    burst = t.unit.config.burst_size
    t.unit.config.burst_size = burst // 2
    log = t.unit.reload(expect="takes effect at the next restart")
    assert "reload: worker changed" in log, log
    assert "port north0: addresses" not in log and "xdp blocklist:" not in log, log
    t.unit.config.burst_size = burst

    # the original file again: nothing to do
    t.unit.reload(text=good_toml, expect=tl.RELOAD_UNCHANGED)

    # and a good change still applies after the refusals
    t.unit.config.ports[0].secondary_addresses = [f"{extra}/24", f"{wanted}/24"]
    t.unit.reload(expect="port north0: addresses")
    flush_neighbour(t.client, t.client_if, wanted)
    assert tl.ping(t.client, wanted, count=2, interval=0.2).received == 2
    assert t.unit.pid == pid


# --- 5. the steering program does not outlive tandemd -------------------------------------------

def test_sigterm_detaches_steering_program(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST)
    assert tl.ping(t.client, t.unit_ip, count=2, interval=0.2).received == 2
    assert t.unit_ns.xdp(t.unit_if)["prog"]["name"] == "tandem_steer"

    rc = t.unit.stop()
    assert t.unit_ns.xdp(t.unit_if) is None, t.unit_ns.xdp(t.unit_if)
    final = t.unit.final_xdp()["ports"].get("north0")
    assert final is not None and VERDICTS <= final.keys(), t.unit.final_counters_log()
    assert final["steered_ipv4"] == 2, final
    # with the program gone the kernel has the whole interface again
    assert tl.ping(t.client, t.kernel_ip, count=2, interval=0.2).received == 2
    assert rc == 0, f"tandemd exit status {rc} after SIGTERM\n{t.unit.log()[-1500:]}"


def test_restart_after_kill9_detaches_stale_program(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST)
    assert tl.ping(t.client, t.unit_ip, count=2, interval=0.2).received == 2
    old = t.unit_ns.xdp(t.unit_if)["prog"]
    first_pid = t.unit.pid

    t.unit.kill()
    stale = t.unit_ns.xdp(t.unit_if)
    assert stale is not None and stale["prog"]["id"] == old["id"], stale   # kill -9 leaves it
    # with no AF_XDP socket behind it the stale program passes everything to the kernel
    assert tl.ping(t.client, t.kernel_ip, count=2, interval=0.2).received == 2
    assert tl.ping(t.client, t.unit_ip, count=2, interval=0.2, wait=1).received == 0

    t.unit.start()                                  # same config, same interface
    assert t.unit.pid != first_pid
    log = t.unit.log()
    assert tl.STALE_STEERING_LOG in log and t.unit_if in log, log
    new = t.unit_ns.xdp(t.unit_if)["prog"]
    assert new["name"] == "tandem_steer" and new["id"] != old["id"], new

    r = tl.ping(t.client, t.unit_ip, count=3, interval=0.2, wait=1)
    assert (r.transmitted, r.received) == (3, 3), r.output
    c = counters_reach(t.unit, lambda c: c["handled"]["icmp_echo_replies_sent"] >= 3)
    assert c["handled"]["icmp_echo_replies_sent"] == 3
    assert xdp_of(c)["steered_ipv4"] == 3          # the new program's own counters
    assert tl.ping(t.client, t.kernel_ip, count=2, interval=0.2).received == 2


# --- 6. another XDP program on the interface is never touched ----------------------------------

@pytest.mark.skipif(not tl.default_decap_binary().exists(),
                    reason=f"tandem-decap not found at {tl.default_decap_binary()}")
def test_foreign_xdp_program_is_left_alone(lab, subnet):
    """tandemd refuses an interface that runs another XDP program (here tandem_decap) and
    leaves it attached; tandem-decap likewise refuses to touch tandemd's tandem_steer."""
    t = tl.client_and_unit(lab, subnet=subnet, kernel_host=KERNEL_HOST, start=False)
    tl.tandem_decap(t.unit_ns, "attach", t.unit_if, "--vip", t.subnet_host(100))
    decap = t.unit_ns.xdp(t.unit_if)["prog"]

    with pytest.raises(tl.TandemdError):
        t.unit.start(timeout=20)
    assert t.unit.process.proc.wait(timeout=10) == 1
    assert f'has another XDP program attached ("tandem_decap", id {decap["id"]})' in t.unit.log(), \
        t.unit.log()
    assert t.unit_ns.xdp(t.unit_if)["prog"]["id"] == decap["id"]
    assert tl.ping(t.client, t.kernel_ip, count=2, interval=0.2).received == 2  # decap passes it

    tl.tandem_decap(t.unit_ns, "detach", t.unit_if)
    t.unit.start()
    steer = t.unit_ns.xdp(t.unit_if)["prog"]
    assert steer["name"] == "tandem_steer", steer
    for cmd in (["status", t.unit_if], ["detach", t.unit_if],
                ["vip", "add", t.unit_if, "10.0.0.1"]):
        cp = tl.tandem_decap(t.unit_ns, *cmd, check=False)
        assert cp.returncode == 1 and "not touching it" in cp.stderr, (cmd, cp.returncode,
                                                                       cp.stderr)
    assert t.unit_ns.xdp(t.unit_if)["prog"]["id"] == steer["id"]
    assert tl.ping(t.client, t.unit_ip, count=2, interval=0.2).received == 2
