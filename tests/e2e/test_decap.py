"""End-to-end tests of tandem-decap (ebpf/decap.bpf.o + ebpf/decap_tool.cpp): IPv4-in-IPv4
decapsulation in XDP on a tunnel-mode backend. No tandemd involved.

    [sender] snd<tag> 10.199.N.1/24  <--veth-->  bk<tag> 10.199.N.2/24 [backend: tandem_decap,
                                                          lo: VIP 10.199.N.100/32,
                                                              OTHER 10.199.N.101/32 (no VIP),
                                                          UDP sink on both, port 9000]

The sender builds Ethernet | outer IPv4 (proto 4, 10.199.N.1 -> .2) | inner IPv4/UDP
(10.199.N.77 -> VIP:9000) frames by hand and sends them through an AF_PACKET socket. The lab
kernel has no ipip module, so the backend's kernel drops IPIP by itself: whatever reaches the
UDP sink was decapsulated by the program.
"""

from __future__ import annotations

import secrets
import socket
import time

import pytest

import tandemlab as tl

DECAP = tl.default_decap_binary()
PORT = 9000

needs_decap = pytest.mark.skipif(
    not DECAP.exists(),
    reason=f"tandem-decap not found at {DECAP}: build it (ninja -C build) or set TANDEM_DECAP")


# --- offline: the frames the tests send -------------------------------------------------------

@pytest.mark.offline
def test_packet_builders():
    # RFC 1071 example header (Wikipedia's): 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7
    p = tl.ipv4_packet("192.168.0.1", "192.168.0.199", 17, b"\0" * (0x73 - 20), ttl=64)
    assert p[:20].hex() == "450000730000400040 11b861c0a80001c0a800c7".replace(" ", "")
    assert tl.inet_checksum(p[:20]) == 0

    u = tl.udp_packet("10.199.0.77", "10.199.0.100", 40000, PORT, b"hello", ident=7)
    assert len(u) == 20 + 8 + 5 and u[9] == 17 and tl.inet_checksum(u[:20]) == 0
    assert int.from_bytes(u[4:6], "big") == 7
    seg = u[20:]
    assert int.from_bytes(seg[0:2], "big") == 40000 and int.from_bytes(seg[2:4], "big") == PORT
    assert int.from_bytes(seg[4:6], "big") == len(seg) and seg[8:] == b"hello"
    pseudo = (socket.inet_aton("10.199.0.77") + socket.inet_aton("10.199.0.100") + bytes([0, 17])
              + len(seg).to_bytes(2, "big"))
    assert tl.inet_checksum(pseudo + seg) == 0           # a valid UDP checksum sums to zero

    o = tl.ipip_packet("10.199.0.1", "10.199.0.2", u)
    assert o[9] == 4 and int.from_bytes(o[2:4], "big") == 20 + len(u) and o[20:] == u
    assert tl.inet_checksum(o[:20]) == 0
    f = tl.ether_frame("02:00:00:00:00:02", "02:00:00:00:00:01", o)
    assert f[:14].hex() == "020000000002020000000001" + "0800" and f[14:] == o


@pytest.mark.offline
def test_parse_decap_status():
    text = ("interface bk1a2b\nprogram tandem_decap\nprogram_id 42\nmode native\n"
            "vips 10.199.0.100 10.199.0.101\ndecapsulated 5\npass_not_ipip 3\npass_not_vip 1\n"
            "pass_malformed 0\ndrop_error 0\n")
    s = tl.parse_decap_status(text)
    assert s == {"interface": "bk1a2b", "program": "tandem_decap", "program_id": 42,
                 "mode": "native", "vips": ["10.199.0.100", "10.199.0.101"], "decapsulated": 5,
                 "pass_not_ipip": 3, "pass_not_vip": 1, "pass_malformed": 0, "drop_error": 0}
    assert tl.parse_decap_status(text.replace("vips 10.199.0.100 10.199.0.101", "vips none")
                                 )["vips"] == []
    with pytest.raises(ValueError):
        tl.parse_decap_status("interface x\n")


# --- the lab ------------------------------------------------------------------------------------

class Backend:
    """Sender and backend namespaces, VIP and OTHER on the backend's lo, a UDP sink on both."""

    def __init__(self, lab: tl.Lab, subnet: str):
        self.sender = lab.netns("sender")
        self.backend = lab.netns("backend")
        self.s_if, self.b_if = lab.veth(self.sender, self.backend, lab.ifname("snd"),
                                        lab.ifname("bk"))
        self.sender_ip, self.backend_ip = f"{subnet}.1", f"{subnet}.2"
        self.client_ip = f"{subnet}.77"          # the inner source: a client nobody here owns
        self.vip, self.other = f"{subnet}.100", f"{subnet}.101"
        lab.addr(self.sender, self.s_if, f"{self.sender_ip}/24")
        lab.addr(self.backend, self.b_if, f"{self.backend_ip}/24")
        lab.addr(self.backend, "lo", f"{self.vip}/32")
        lab.addr(self.backend, "lo", f"{self.other}/32")
        self.sender_mac = self.sender.mac(self.s_if)
        self.backend_mac = self.backend.mac(self.b_if)
        self.sink = tl.UdpSink(self.backend, [f"{self.vip}:{PORT}", f"{self.other}:{PORT}"],
                               log_name="udpsink")
        self.token = secrets.token_hex(4)
        self.sent = 0

    def frame(self, inner_dst: str, payload: bytes, *, sport: int, encapsulate: bool = True
              ) -> bytes:
        inner = tl.udp_packet(self.client_ip, inner_dst, sport, PORT, payload, ident=sport)
        l3 = tl.ipip_packet(self.sender_ip, self.backend_ip, inner, ident=sport ^ 0x5555) \
            if encapsulate else inner
        return tl.ether_frame(self.backend_mac, self.sender_mac, l3)

    def send(self, inner_dst: str, n: int, tag: str, *, encapsulate: bool = True,
             mangle=None) -> list[bytes]:
        """Send n frames with distinct payloads to inner_dst:PORT; returns the payloads."""
        payloads, frames = [], []
        for i in range(n):
            payload = f"{tag} {i} {self.token} ".encode() + secrets.token_bytes(16)
            self.sent += 1
            f = self.frame(inner_dst, payload, sport=41000 + self.sent, encapsulate=encapsulate)
            frames.append(mangle(f) if mangle else f)
            payloads.append(payload)
        assert tl.send_frames(self.sender, self.s_if, frames, gap=0.01) == n
        return payloads

    def received(self, dst: str, wait_for: int = 0, timeout: float = 3.0) -> list[dict]:
        """Datagrams the sink got on dst:PORT so far: after waiting until there are wait_for of
        them (or the timeout: the caller asserts on what arrived), or with wait_for=0 after a
        short pause (to show that nothing more arrives)."""
        key = f"{dst}:{PORT}"

        def mine() -> list[dict]:
            return [d for d in self.sink.datagrams() if d["dst"] == key]
        if wait_for:
            try:
                tl.wait_until(lambda: len(mine()) >= wait_for, timeout=timeout, interval=0.05,
                              what=f"{wait_for} datagrams to {key}")
            except TimeoutError:
                pass
        else:
            time.sleep(0.5)
        return mine()

    def status(self) -> dict:
        return tl.decap_status(self.backend, self.b_if)

    def kernel(self) -> dict:
        """The backend kernel's counters that tell what became of the frames: IPIP it got
        undecapsulated (Ip InUnknownProtos: no ipip module), UDP datagrams delivered and UDP
        checksum errors."""
        snmp = self.backend.snmp()
        return {"unknown_proto": snmp["Ip"]["InUnknownProtos"],
                "udp_in": snmp["Udp"]["InDatagrams"],
                "udp_csum_errors": snmp["Udp"]["InCsumErrors"]}

    def kernel_delta(self, before: dict) -> dict:
        now = self.kernel()
        return {k: now[k] - before[k] for k in now}


def payloads_of(datagrams: list[dict]) -> list[bytes]:
    return sorted(d["payload"] for d in datagrams)


@needs_decap
@pytest.mark.lab_only
@pytest.mark.parametrize("mode", ["native", "generic"])
def test_decap_delivers_inner_packets_to_the_vip(lab, subnet, mode):
    b = Backend(lab, subnet)

    # without the program the backend's kernel drops IPIP (no ipip module): nothing arrives,
    # while the same datagrams sent plainly do arrive (the sink and the addressing work)
    k = b.kernel()
    dropped = b.send(b.vip, 2, "before-attach")
    plain = b.send(b.vip, 2, "plain", encapsulate=False)
    got = b.received(b.vip, wait_for=2)
    assert payloads_of(got) == sorted(plain), got
    assert not set(dropped) & set(payloads_of(got))
    assert b.kernel_delta(k) == {"unknown_proto": 2, "udp_in": 2, "udp_csum_errors": 0}
    assert tl.tandem_decap(b.backend, "status", b.b_if, check=False).returncode == 3

    cp = tl.tandem_decap(b.backend, "attach", b.b_if, "--vip", b.vip, "--mode", mode)
    assert f"mode {mode}" in cp.stdout and b.vip in cp.stdout, cp.stdout
    x = b.backend.xdp(b.b_if)
    assert x is not None and x["prog"]["name"] == "tandem_decap", x
    assert x["mode"] == {"native": 1, "generic": 2}[mode], x
    s0 = b.status()
    assert s0["vips"] == [b.vip] and s0["mode"] == mode, s0
    assert s0["decapsulated"] == 0, s0

    # IPIP to the VIP: the inner datagrams arrive, exactly, with the client's source address
    base = len(b.received(b.vip, wait_for=0))
    k = b.kernel()
    sent = b.send(b.vip, 5, "vip")
    got = b.received(b.vip, wait_for=base + 5)[base:]
    assert payloads_of(got) == sorted(sent), got
    assert all(d["src"] == b.client_ip for d in got), got
    assert b.kernel_delta(k) == {"unknown_proto": 0, "udp_in": 5, "udp_csum_errors": 0}
    s1 = b.status()
    assert s1["decapsulated"] == 5, s1
    assert s1["pass_not_vip"] == 0 and s1["pass_malformed"] == 0 and s1["drop_error"] == 0, s1

    # IPIP to an address that is not a VIP: passed untouched, so the kernel drops it
    k = b.kernel()
    sent_other = b.send(b.other, 3, "not-vip")
    assert b.received(b.other, wait_for=0) == [], "a non-VIP inner packet was delivered"
    assert b.kernel_delta(k)["unknown_proto"] == 3
    s2 = b.status()
    assert s2["pass_not_vip"] == 3 and s2["decapsulated"] == 5, s2

    # a truncated IPIP frame (outer total length beyond the frame) is passed as malformed
    b.send(b.vip, 1, "truncated", mangle=lambda f: f[:-12])
    s3 = b.status()
    assert s3["pass_malformed"] == 1 and s3["decapsulated"] == 5, s3

    # VIPs change at run time
    tl.tandem_decap(b.backend, "vip", "add", b.b_if, b.other)
    assert b.status()["vips"] == sorted([b.vip, b.other], key=socket.inet_aton)
    sent_added = b.send(b.other, 2, "added")
    got = b.received(b.other, wait_for=2)
    assert payloads_of(got) == sorted(sent_added), got
    assert not set(sent_other) & set(payloads_of(got))
    tl.tandem_decap(b.backend, "vip", "del", b.b_if, b.other)
    b.send(b.other, 1, "deleted")
    assert len(b.received(b.other, wait_for=0)) == 2
    s4 = b.status()
    assert s4["vips"] == [b.vip] and s4["decapsulated"] == 7 and s4["pass_not_vip"] == 4, s4

    # detach: no program on the interface, and IPIP is the kernel's (dropped) again
    cp = tl.tandem_decap(b.backend, "detach", b.b_if)
    assert "detached" in cp.stdout, cp.stdout
    assert b.backend.xdp(b.b_if) is None, b.backend.xdp(b.b_if)
    assert tl.tandem_decap(b.backend, "status", b.b_if, check=False).returncode == 3
    before = len(b.received(b.vip, wait_for=0))
    k = b.kernel()
    b.send(b.vip, 2, "after-detach")
    assert len(b.received(b.vip, wait_for=0)) == before
    assert b.kernel_delta(k) == {"unknown_proto": 2, "udp_in": 0, "udp_csum_errors": 0}


@needs_decap
@pytest.mark.lab_only
def test_decap_refuses_double_attach_and_bad_input(lab, subnet):
    b = Backend(lab, subnet)
    tl.tandem_decap(b.backend, "attach", b.b_if, "--vip", b.vip)
    first = b.backend.xdp(b.b_if)["prog"]["id"]
    cp = tl.tandem_decap(b.backend, "attach", b.b_if, "--vip", b.other, check=False)
    assert cp.returncode == 1 and "already attached" in cp.stderr, cp.stderr
    assert b.backend.xdp(b.b_if)["prog"]["id"] == first
    assert b.status()["vips"] == [b.vip]
    cp = tl.tandem_decap(b.backend, "vip", "del", b.b_if, b.other, check=False)
    assert cp.returncode == 1 and "not configured" in cp.stderr, cp.stderr
    cp = tl.tandem_decap(b.backend, "attach", b.b_if, "--vip", "10.199.0.300", check=False)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    tl.tandem_decap(b.backend, "detach", b.b_if)
    assert b.backend.xdp(b.b_if) is None
