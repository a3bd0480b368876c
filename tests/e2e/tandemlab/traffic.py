"""Traffic from kernel namespaces with parsed, bounded results: ping, arping; hand-made frames
(IPv4, UDP, IPv4-in-IPv4) sent through AF_PACKET; small UDP/TCP servers and clients."""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import time
from dataclasses import dataclass, field

from .lab import Netns
from .proc import run


@dataclass
class PingResult:
    transmitted: int
    received: int
    errors: int
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    output: str
    returncode: int

    @property
    def rtt_summary(self) -> str:
        if self.rtt_avg_ms is None:
            return "no replies"
        return (f"rtt min/avg/max = {self.rtt_min_ms:.3f}/{self.rtt_avg_ms:.3f}/"
                f"{self.rtt_max_ms:.3f} ms")


def parse_ping(output: str, returncode: int = 0) -> PingResult:
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received(?:, \+(\d+) errors)?",
                  output)
    if not m:
        raise ValueError(f"cannot parse ping output:\n{output}")
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/[\d.]+ ms", output)
    return PingResult(
        transmitted=int(m.group(1)), received=int(m.group(2)), errors=int(m.group(3) or 0),
        rtt_min_ms=float(rtt.group(1)) if rtt else None,
        rtt_avg_ms=float(rtt.group(2)) if rtt else None,
        rtt_max_ms=float(rtt.group(3)) if rtt else None,
        output=output, returncode=returncode)


def ping(ns: Netns, address: str, count: int = 5, interval: float = 0.2, wait: float = 1.0,
         ifname: str | None = None) -> PingResult:
    """ping -c COUNT -i INTERVAL -W WAIT from ns. Sends exactly COUNT echo requests (no -w,
    which would keep sending until COUNT replies); the subprocess itself is time-bounded."""
    deadline = count * interval + wait + 2
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if ifname:
        argv += ["-I", ifname]
    cp = ns.run(argv + [address], check=False, timeout=deadline + 10)
    return parse_ping(cp.stdout + cp.stderr, cp.returncode)


@dataclass
class ArpingResult:
    sent: int
    received: int
    reply_macs: list[str] = field(default_factory=list)   # one per reply, lower case
    output: str = ""
    returncode: int = 0


def parse_arping(output: str, returncode: int = 0) -> ArpingResult:
    """Parse iputils arping output ("Unicast reply from A [MAC]  0.6ms", "Received N ...")."""
    macs = [m.lower() for m in
            re.findall(r"reply from \S+ \[([0-9A-Fa-f:]{17})\]", output)]
    sent = re.search(r"Sent (\d+) probes?", output)
    recv = re.search(r"Received (\d+) response", output)
    if not sent or not recv:
        raise ValueError(f"cannot parse arping output:\n{output}")
    return ArpingResult(sent=int(sent.group(1)), received=int(recv.group(1)), reply_macs=macs,
                        output=output, returncode=returncode)


def arping(ns: Netns, ifname: str, address: str, count: int = 3, deadline: int = 5) -> ArpingResult:
    """arping -c COUNT -w DEADLINE -I IF ADDRESS from ns (stops after COUNT replies)."""
    cp = ns.run(["arping", "-c", str(count), "-w", str(deadline), "-I", ifname, address],
                check=False, timeout=deadline + 10)
    return parse_arping(cp.stdout + cp.stderr, cp.returncode)


def static_neighbour(ns: Netns, ifname: str, address: str, mac: str) -> None:
    """Point address at mac in ns's neighbour table (permanent entry)."""
    run(["ip", "-n", ns.name, "neigh", "replace", address, "lladdr", mac, "dev", ifname,
         "nud", "permanent"])


# --- hand-made frames (IPv4, UDP, IPv4-in-IPv4) sent from a namespace ------------------------
#
# For traffic the kernel's tools cannot make (e.g. IPIP without the ipip module): build the
# bytes here, send them with an AF_PACKET socket inside a namespace (send_frames).

def inet_checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum of data (16-bit one's complement of the one's complement sum)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ipv4_packet(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64,
                ident: int = 0, tos: int = 0, dont_fragment: bool = True) -> bytes:
    """An IPv4 header (no options, correct checksum) followed by payload."""
    total = 20 + len(payload)
    if total > 0xFFFF:
        raise ValueError("IPv4 packet too long")
    header = bytearray(20)
    header[0] = 0x45
    header[1] = tos
    header[2:4] = total.to_bytes(2, "big")
    header[4:6] = (ident & 0xFFFF).to_bytes(2, "big")
    header[6:8] = (0x4000 if dont_fragment else 0).to_bytes(2, "big")
    header[8] = ttl
    header[9] = proto
    header[12:16] = socket.inet_aton(src)
    header[16:20] = socket.inet_aton(dst)
    header[10:12] = inet_checksum(bytes(header)).to_bytes(2, "big")
    return bytes(header) + payload


def udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes, **ip_kw) -> bytes:
    """IPv4 + UDP with correct header and UDP (pseudo-header) checksums."""
    length = 8 + len(payload)
    udp = bytearray(8)
    udp[0:2] = sport.to_bytes(2, "big")
    udp[2:4] = dport.to_bytes(2, "big")
    udp[4:6] = length.to_bytes(2, "big")
    pseudo = (socket.inet_aton(src) + socket.inet_aton(dst) + bytes([0, 17])
              + length.to_bytes(2, "big"))
    csum = inet_checksum(pseudo + bytes(udp) + payload) or 0xFFFF   # 0 means "no checksum"
    udp[6:8] = csum.to_bytes(2, "big")
    return ipv4_packet(src, dst, 17, bytes(udp) + payload, **ip_kw)


def ipip_packet(outer_src: str, outer_dst: str, inner: bytes, **ip_kw) -> bytes:
    """IPv4-in-IPv4 (protocol 4): an outer IPv4 header around the inner IPv4 packet."""
    return ipv4_packet(outer_src, outer_dst, 4, inner, **ip_kw)


def ether_frame(dst_mac: str, src_mac: str, payload: bytes, ethertype: int = 0x0800) -> bytes:
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + ethertype.to_bytes(2, "big") + payload


_SEND_FRAMES = r"""
import socket, sys, time
ifname, gap = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
n = 0
for line in sys.stdin:
    line = line.strip()
    if line:
        s.send(bytes.fromhex(line))
        n += 1
        if gap:
            time.sleep(gap)
print(n)
"""


def send_frames(ns: Netns, ifname: str, frames: list[bytes], gap: float = 0.0) -> int:
    """Send raw Ethernet frames on ifname from inside ns (AF_PACKET, this interpreter run in
    the namespace); `gap` seconds between frames. Returns how many were sent."""
    cp = ns.python(_SEND_FRAMES, ifname, str(gap), input="".join(f.hex() + "\n" for f in frames),
                   timeout=10 + gap * len(frames))
    return int(cp.stdout.strip())


# --- small servers run in a namespace, and their clients -------------------------------------

_UDP_SINK = r"""
import json, select, socket, sys, time
lifetime, binds = float(sys.argv[1]), sys.argv[2:]
socks = {}
for b in binds:
    addr, port = b.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    socks[s] = b
print(json.dumps({"ready": binds}), flush=True)
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    readable, _, _ = select.select(list(socks), [], [], 0.2)
    for s in readable:
        data, (src, sport) = s.recvfrom(65535)
        print(json.dumps({"dst": socks[s], "src": src, "sport": sport, "payload": data.hex()}),
              flush=True)
"""


class UdpSink:
    """A UDP server in a namespace that records every datagram it receives on the given
    "addr:port" bindings (JSON lines in its log). Lives at most `lifetime` seconds.

        sink = UdpSink(lab_ns, ["10.199.1.100:9000"], log_name="sink")
        ... sink.wait_count(5) -> [{"dst": "10.199.1.100:9000", "src", "sport", "payload"}]"""

    def __init__(self, ns: Netns, binds: list[str], *, log_name: str = "udpsink",
                 lifetime: float = 120.0):
        self.binds = list(binds)
        self.process = ns.spawn_python(_UDP_SINK, str(lifetime), *self.binds, log_name=log_name)
        self.process.wait_output('{"ready"', timeout=10)

    def datagrams(self) -> list[dict]:
        out = []
        for line in self.process.log().splitlines():
            if line.startswith('{"dst"'):
                d = json.loads(line)
                d["payload"] = bytes.fromhex(d["payload"])
                out.append(d)
        return out

    def wait_count(self, n: int, timeout: float = 5.0) -> list[dict]:
        """Wait until at least n datagrams arrived; returns all of them (maybe fewer than n
        after the timeout: the caller asserts on what it got)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.datagrams()
            if len(got) >= n or time.monotonic() >= deadline:
                return got
            time.sleep(0.05)


_TCP_HASH_SERVER = r"""
import hashlib, json, socket, sys, time
addr, port, lifetime = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((addr, port))
srv.listen(4)
srv.settimeout(0.5)
print(json.dumps({"ready": f"{addr}:{port}"}), flush=True)
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    try:
        conn, peer = srv.accept()
    except socket.timeout:
        continue
    conn.settimeout(10)
    chunks = []
    try:
        while True:
            b = conn.recv(65536)
            if not b:
                break
            chunks.append(b)
        data = b"".join(chunks)
        digest = hashlib.sha256(data).hexdigest()
        conn.sendall(digest.encode() + b"\n" + data)
        conn.shutdown(socket.SHUT_WR)
        print(json.dumps({"peer": peer[0], "received": len(data), "sha256": digest}), flush=True)
    except OSError as e:
        print(json.dumps({"peer": peer[0], "error": str(e)}), flush=True)
    finally:
        conn.close()
"""

_TCP_HASH_CLIENT = r"""
import hashlib, json, random, socket, sys, time
addr, timeout = sys.argv[1], float(sys.argv[5])
port, size, seed = (int(a) for a in sys.argv[2:5])
data = random.Random(seed).randbytes(size)
start = time.monotonic()
s = socket.create_connection((addr, port), timeout=timeout)
local = s.getsockname()[0]
s.sendall(data)
s.shutdown(socket.SHUT_WR)
chunks = []
while True:
    b = s.recv(65536)
    if not b:
        break
    chunks.append(b)
s.close()
reply = b"".join(chunks)
line, _, echo = reply.partition(b"\n")
print(json.dumps({"local": local, "sent_sha256": hashlib.sha256(data).hexdigest(),
                  "server_sha256": line.decode(errors="replace"), "echo_len": len(echo),
                  "echo_sha256": hashlib.sha256(echo).hexdigest(),
                  "seconds": time.monotonic() - start}))
"""


class TcpHashServer:
    """A TCP server in a namespace: per connection it reads until the peer half-closes, then
    answers sha256(data) in hex, a newline, and the data itself; it logs
    {"peer", "received", "sha256"} per connection. Lives at most `lifetime` seconds."""

    def __init__(self, ns: Netns, address: str, port: int, *, log_name: str = "tcphash",
                 lifetime: float = 120.0):
        self.address, self.port = address, port
        self.process = ns.spawn_python(_TCP_HASH_SERVER, address, str(port), str(lifetime),
                                       log_name=log_name)
        self.process.wait_output('{"ready"', timeout=10)

    def connections(self) -> list[dict]:
        return [json.loads(line) for line in self.process.log().splitlines()
                if line.startswith('{"peer"')]


def tcp_hash_exchange(ns: Netns, address: str, port: int, size: int, seed: int = 1,
                      timeout: float = 15.0) -> dict:
    """From ns, send `size` pseudo-random bytes (random.Random(seed)) to a TcpHashServer and read
    its answer. -> {"local", "sent_sha256", "server_sha256", "echo_len", "echo_sha256",
    "seconds"}; expected_sha256(size, seed) is what a correct exchange shows everywhere."""
    cp = ns.python(_TCP_HASH_CLIENT, address, str(port), str(size), str(seed), str(timeout),
                   timeout=timeout + 10)
    return json.loads(cp.stdout)


def expected_sha256(size: int, seed: int = 1) -> str:
    return hashlib.sha256(random.Random(seed).randbytes(size)).hexdigest()
