"""Self-tests of the tandemlab library: parsers and TOML offline; namespaces, teardown,
sd_notify and the telemetry client as root (the last against dpdk-testpmd, not tandemd)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib

import pytest

import tandemlab as tl
from tandemlab.udp_relay import UdpRelay

# --- offline -------------------------------------------------------------------------------

PING_OK = """PING 10.199.1.2 (10.199.1.2) 56(84) bytes of data.
64 bytes from 10.199.1.2: icmp_seq=1 ttl=64 time=0.050 ms

--- 10.199.1.2 ping statistics ---
5 packets transmitted, 5 received, 0% packet loss, time 808ms
rtt min/avg/max/mdev = 0.038/0.049/0.059/0.007 ms
"""

PING_ERR = """--- 10.199.1.9 ping statistics ---
3 packets transmitted, 0 received, +3 errors, 100% packet loss, time 2041ms
"""

ARPING_OK = """ARPING 10.199.1.2 from 10.199.1.1 cli9f3a
Unicast reply from 10.199.1.2 [A2:36:70:4E:BD:14]  0.535ms
Unicast reply from 10.199.1.2 [A2:36:70:4E:BD:14]  0.541ms
Sent 2 probes (1 broadcast(s))
Received 2 response(s)
"""


@pytest.mark.offline
def test_parse_ping():
    r = tl.parse_ping(PING_OK)
    assert (r.transmitted, r.received, r.errors) == (5, 5, 0)
    assert (r.rtt_min_ms, r.rtt_avg_ms, r.rtt_max_ms) == (0.038, 0.049, 0.059)
    r = tl.parse_ping(PING_ERR)
    assert (r.transmitted, r.received, r.errors, r.rtt_avg_ms) == (3, 0, 3, None)
    with pytest.raises(ValueError):
        tl.parse_ping("garbage")


@pytest.mark.offline
def test_parse_arping():
    r = tl.parse_arping(ARPING_OK)
    assert (r.sent, r.received) == (2, 2)
    assert r.reply_macs == ["a2:36:70:4e:bd:14"] * 2


@pytest.mark.offline
def test_config_toml_round_trip():
    cfg = tl.UnitConfig(
        name="tandem-a", file_prefix='odd "prefix"\\x', id=7,
        ports=[tl.PortConfig("north0", tl.af_xdp("northab12"), "10.199.1.2/24",
                             gateway="10.199.1.1"),
               tl.PortConfig("south0", tl.af_packet("southab12", 1, qpairs=1), "10.199.2.2/24",
                             role="south")],
        extra_eal_args=["--log-level=pmd.net.af_xdp:8"],
        extra={"worker": {"burst_size": 8}, "future": {"x": [1, 2], "on": False}})
    doc = tomllib.loads(cfg.to_toml())
    assert doc["unit"] == {"id": 7, "name": "tandem-a"}
    assert doc["eal"] == {"lcores": "0", "memory_mb": 256, "no_huge": True,
                          "file_prefix": 'odd "prefix"\\x',
                          "extra_args": ["--log-level=pmd.net.af_xdp:8"]}
    assert doc["worker"] == {"burst_size": 8, "idle_backoff": True}
    assert doc["neighbour"] == {"capacity": 1024, "reachable_ms": 30000,
                                "probe_interval_ms": 1000, "max_probes": 3}
    assert doc["log"] == {"level": "info"}
    assert doc["future"] == {"x": [1, 2], "on": False}
    assert doc["port"] == [
        {"name": "north0", "device": "net_af_xdp0,iface=northab12", "role": "both",
         "address": "10.199.1.2/24", "gateway": "10.199.1.1"},
        {"name": "south0", "device": "net_af_packet1,iface=southab12,qpairs=1",
         "role": "south", "address": "10.199.2.2/24"},
    ]


@pytest.mark.offline
def test_parse_telemetry_replies():
    flat = {"north0/rx_packets": 3, "north0/tx_packets": 2, "south0/rx_packets": 1,
            "handled/icmp_echo_replies_sent": 2, "drop/ipv4_not_local": 4, "worker/polls": 9,
            "neighbour/created": 1, "north0/xdp/steered_ipv4": 2, "north0/xdp/passed_arp": 5}
    c = tl.parse_counters(flat, port_names=["north0", "south0"])
    assert c["ports"] == [{"name": "north0", "rx_packets": 3, "tx_packets": 2,
                           "xdp": {"steered_ipv4": 2, "passed_arp": 5}},
                          {"name": "south0", "rx_packets": 1}]
    assert c["handled"] == {"icmp_echo_replies_sent": 2}
    assert c["drops"] == {"ipv4_not_local": 4}
    assert c["workers"] == {"polls": 9}
    assert c["neighbour"] == {"created": 1}
    with pytest.raises(tl.TelemetryError):
        tl.parse_counters(flat, port_names=["north0"])  # south0 is no port of this unit
    with pytest.raises(tl.TelemetryError):
        tl.parse_counters({"uptime": 1}, port_names=[])
    with pytest.raises(tl.TelemetryError):
        tl.parse_counters({"north0/xdp/": 1}, port_names=["north0"])
    with pytest.raises(tl.TelemetryError):  # a flat counter and a group of the same name
        tl.parse_counters({"north0/xdp": 1, "north0/xdp/steered_ipv4": 1}, port_names=["north0"])

    want = [{"port": "north0", "address": "10.0.0.1", "mac": "aa:bb:cc:dd:ee:ff",
             "state": "reachable", "age_ms": 200}]
    assert tl.parse_neighbours(["north0 10.0.0.1 AA:BB:CC:DD:EE:FF reachable 200"]) == want
    assert tl.parse_neighbours([]) == []
    with pytest.raises(tl.TelemetryError):
        tl.parse_neighbours(["north0 10.0.0.1"])


@pytest.mark.offline
def test_ifname_limit():
    assert tl.check_ifname("a" * 15)
    for bad in ("a" * 16, "", "has space", "sl/ash"):
        with pytest.raises(ValueError):
            tl.check_ifname(bad)


# --- root: namespaces and teardown -----------------------------------------------------------

@pytest.mark.lab_only
def test_bridge_lab_and_teardown():
    with tl.Lab() as lab:
        a, b, sw = lab.netns("a"), lab.netns("b"), lab.netns("switch")
        a_if, a_sw = lab.veth(a, sw)
        b_if, b_sw = lab.veth(b, sw)
        for name in (a_if, a_sw, b_if, b_sw):
            assert len(name) <= 15
        br = lab.bridge(sw)
        lab.attach(sw, a_sw, br)
        lab.attach(sw, b_sw, br)
        lab.addr(a, a_if, "10.199.251.1/24")
        lab.addr(b, b_if, "10.199.251.2/24")
        # tx checksum offload is off on the veth ends
        feats = a.run(["ethtool", "-k", a_if]).stdout
        assert "tx-checksumming: off" in feats
        r = tl.ping(a, "10.199.251.2", count=3)
        assert r.received == 3, r.output
        arp = tl.arping(a, a_if, "10.199.251.2", count=2)
        assert arp.received == 2 and set(arp.reply_macs) == {b.mac(b_if)}, arp.output
        lab_id = lab.id
        assert len(tl.leftovers(lab_id)) >= 3
    assert tl.leftovers(lab_id) == []


@pytest.mark.lab_only
def test_teardown_after_exception_and_root_links():
    with pytest.raises(RuntimeError, match="boom"):
        with tl.Lab() as lab:
            ns = lab.netns("x")
            host_end, ns_end = lab.veth(None, ns)          # one end in the root namespace
            br = lab.bridge(None)
            lab.attach(None, host_end, br)
            p = ns.spawn(["sleep", "60"], "sleeper")
            lab_id = lab.id
            raise RuntimeError("boom")
    assert p.poll() is not None
    assert tl.leftovers(lab_id) == []
    links = tl.run(["ip", "-br", "link"]).stdout
    assert host_end not in links and br not in links


@pytest.mark.lab_only
def test_cleanup_stale_removes_dead_owners():
    dead = subprocess.Popen(["true"])
    dead.wait()
    name = f"tl{dead.pid}-abcd-stale"
    tl.run(["ip", "netns", "add", name])
    try:
        removed = tl.cleanup_stale(verbose=False)
        assert f"netns {name}" in removed
        assert name not in tl.list_netns()
    finally:
        tl.run(["ip", "netns", "del", name], check=False)


@pytest.mark.lab_only
def test_notify_socket_from_inside_netns(lab):
    ns = lab.netns("n")
    sock = tl.NotifySocket(lab.workdir / "notify.sock")
    try:
        code = ("import os, socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
                "s.sendto(b'STATUS=starting\\nREADY=1\\n', os.environ['NOTIFY_SOCKET'])")
        env = dict(os.environ, NOTIFY_SOCKET=str(sock.path))
        p = ns.spawn([sys.executable, "-c", code], "notifier", env=env)
        msg = sock.wait_for("READY=1", timeout=10, proc=None)
        assert "STATUS=starting" in msg
        assert p.proc.wait(timeout=10) == 0
        # a process that exits without notifying fails fast, not after the timeout
        p2 = ns.spawn(["true"], "quitter")
        with pytest.raises(tl.TandemdError, match="exited"):
            sock.wait_for("NEVER=1", timeout=10, proc=p2)
    finally:
        sock.close()


@pytest.mark.lab_only
@pytest.mark.skipif(shutil.which("dpdk-testpmd") is None, reason="dpdk-testpmd not installed")
def test_telemetry_client_against_testpmd(lab):
    """The telemetry client speaks DPDK's v2 protocol (checked against testpmd's /ethdev
    commands over an AF_XDP port on a veth, i.e. the same setup tandemd uses)."""
    ns_u, ns_c = lab.netns("unit"), lab.netns("client")
    _, u_if = lab.veth(ns_c, ns_u)
    prefix = f"{lab.id}-tp"
    lab.add_runtime_dir(f"/var/run/dpdk/{prefix}")
    p = ns_u.spawn(["dpdk-testpmd", "--no-huge", "--no-pci", "-m", "256",
                    f"--file-prefix={prefix}", "-l", "0,1", f"--vdev=net_af_xdp0,iface={u_if}",
                    "--", "--no-mlockall", "--total-num-mbufs=2048", "--stats-period", "600"],
                   "testpmd")
    tl.wait_until(lambda: p.poll() is not None or tl.socket_path(prefix).exists(), timeout=20,
                  what="testpmd telemetry socket")
    assert p.poll() is None, p.log()
    assert tl.wait_until(lambda: tl.telemetry("/ethdev/list", prefix), timeout=10) == [0]
    with tl.TelemetryClient(prefix) as c:
        assert c.hello["pid"] > 0
        assert "--file-prefix=" + prefix in c.query("/eal/params")
        # the port's stats handler fails (null) until the port has started
        stats = tl.wait_until(lambda: c.query("/ethdev/stats,0"), timeout=10)
        assert "ipackets" in stats
        with pytest.raises(tl.TelemetryError, match="unknown command"):
            c.query("/no/such/command")
    assert p.stop(timeout=10) == 0


# --- the UDP relay (tandemlab/udp_relay.py), with plain sockets in a namespace ----------------

_RELAY_PROBE = r"""
import json, socket, struct, sys, threading, time
relay, sink_at, n, gap, settle = (sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]),
                                  float(sys.argv[5]))
def ep(s):
    h, _, p = s.rpartition(":")
    return h, int(p)
sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sink.bind(ep(sink_at))
sink.settimeout(0.05)
got = []
stop = threading.Event()
def receive():
    while not stop.is_set():
        try:
            data, src = sink.recvfrom(2048)
        except socket.timeout:
            continue
        now = time.monotonic()
        seq, sent = struct.unpack("!Id", data[:12])
        got.append({"seq": seq, "delay_ms": (now - sent) * 1000, "src": f"{src[0]}:{src[1]}",
                    "len": len(data)})
th = threading.Thread(target=receive)
th.start()
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(n):
    out.sendto(struct.pack("!Id", i, time.monotonic()) + bytes(20), ep(relay))
    time.sleep(gap)
time.sleep(settle)
stop.set()
th.join()
print(json.dumps({"got": got}))
"""


def relay_probe(ns: tl.Netns, relay: str, sink: str, n: int, gap: float = 0.001,
                settle: float = 0.5) -> list[dict]:
    """Send n numbered datagrams (gap s apart) to the relay and record what reaches the sink,
    in arrival order: [{"seq", "delay_ms" (send to receive, one clock), "src", "len"}]."""
    cp = ns.python(_RELAY_PROBE, relay, sink, str(n), str(gap), str(settle),
                   timeout=n * gap * 3 + settle + 20)
    return json.loads(cp.stdout)["got"]


@pytest.mark.lab_only
def test_udp_relay_delays_in_order(lab):
    """A fixed delay, nothing else: every datagram arrives once, in order, from the relay's
    address, held at least the delay (and not much longer); the counts say so too."""
    ns = lab.netns("relay")
    delay = 20.0
    r = UdpRelay(ns, "127.0.0.1:9600", "127.0.0.1:9601", delay_ms=delay, lifetime=30,
                 log_name="relay-delay")
    got = relay_probe(ns, "127.0.0.1:9600", "127.0.0.1:9601", n=100, gap=0.002)
    stats = r.stop()
    delays = sorted(g["delay_ms"] for g in got)
    print(f"\nrelay delay {delay} ms: measured min {delays[0]:.2f} median "
          f"{delays[len(delays) // 2]:.2f} max {delays[-1]:.2f} ms; relay stats {stats}")
    assert [g["seq"] for g in got] == list(range(100))
    assert {g["src"] for g in got} == {"127.0.0.1:9600"} and {g["len"] for g in got} == {32}
    assert delays[0] >= delay, delays[:5]
    assert delays[len(delays) // 2] < delay + 15, delays
    assert (stats["received"], stats["forwarded"], stats["duplicated"], stats["dropped"],
            stats["reordered"], stats["overflow"], stats["ignored"]) == (100, 100, 0, 0, 0, 0, 0)
    assert stats["done"] and stats["delay_ms_min"] >= delay, stats


@pytest.mark.lab_only
def test_udp_relay_reorders_duplicates_and_drops(lab):
    """Jitter larger than the gap between datagrams reorders them, duplication and loss act at
    about their probabilities, and what the sink sees agrees with the relay's counts; the same
    seed drops the same datagrams again."""
    ns = lab.netns("relay")
    n, delay, jitter, dup, loss = 400, 5.0, 10.0, 0.2, 0.1
    runs = []
    for run_ in range(2):
        r = UdpRelay(ns, "127.0.0.1:9600", "127.0.0.1:9601", delay_ms=delay, jitter_ms=jitter,
                     duplicate=dup, loss=loss, seed=7, lifetime=30, log_name=f"relay-{run_}")
        got = relay_probe(ns, "127.0.0.1:9600", "127.0.0.1:9601", n=n, gap=0.001)
        runs.append((got, r.stop()))
    got, stats = runs[0]
    seqs = [g["seq"] for g in got]
    counts = {s: seqs.count(s) for s in set(seqs)}
    missing = sorted(set(range(n)) - set(seqs))
    twice = sorted(s for s, c in counts.items() if c == 2)
    inversions = sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
    delays = sorted(g["delay_ms"] for g in got)
    print(f"\nrelay stats {stats}\nsink: {len(got)} datagrams, {len(missing)} missing, "
          f"{len(twice)} twice, {inversions} adjacent inversions, delay "
          f"{delays[0]:.2f}..{delays[-1]:.2f} ms")
    assert stats["received"] == n and stats["overflow"] == 0 and stats["send_errors"] == 0
    assert max(counts.values()) <= 2
    assert len(missing) == stats["dropped"] and len(twice) == stats["duplicated"], stats
    assert stats["forwarded"] == len(got) == n - stats["dropped"] + stats["duplicated"]
    assert 0.03 * n <= stats["dropped"] <= 0.2 * n, stats
    assert 0.1 * n <= stats["duplicated"] <= 0.3 * n, stats
    assert stats["reordered"] > 0 and inversions > 0, (stats, seqs[:40])
    assert delays[0] >= delay and delays[len(delays) // 2] < delay + jitter + 10, delays
    # The same seed and the same arrival order: the same datagrams lost and duplicated.
    got2, stats2 = runs[1]
    seqs2 = [g["seq"] for g in got2]
    assert sorted(set(range(n)) - set(seqs2)) == missing
    assert sorted(s for s in set(seqs2) if seqs2.count(s) == 2) == twice
    assert (stats2["dropped"], stats2["duplicated"]) == (stats["dropped"], stats["duplicated"])


@pytest.mark.lab_only
def test_udp_relay_is_bounded_and_ignores_its_destination(lab):
    """The relay exits on its own after its lifetime (with its final stats), and a datagram
    from its destination is not sent back there (no loop)."""
    ns = lab.netns("relay")
    r = UdpRelay(ns, "127.0.0.1:9600", "127.0.0.1:9601", lifetime=1.5, log_name="relay-short")
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('127.0.0.1', 9601)); s.sendto(b'x', ('127.0.0.1', 9600)); "
            "s.settimeout(0.5)\n"
            "try:\n    s.recvfrom(100); print('looped')\n"
            "except socket.timeout:\n    print('quiet')")
    assert ns.python(code, timeout=10).stdout.strip() == "quiet"
    live = tl.wait_until(lambda: (lambda s: s if s["ignored"] else None)(r.stats()), timeout=2,
                         interval=0.05, what="the relay to count the ignored datagram")
    assert live["ignored"] == 1 and live["forwarded"] == 0 and not live["done"], live
    t0 = time.monotonic()
    r.process.proc.wait(timeout=5)
    assert r.process.returncode == 0 and time.monotonic() - t0 < 2.0
    final = r.final_stats()
    assert final is not None and final["done"] and final["ignored"] == 1, r.process.log()
    assert r.stats() == final
