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
    """A TCP server in a namespace, bound to `address`: per connection it reads until the peer
    half-closes, then answers sha256(data) in hex, a newline, and the data itself. It is an
    LbBackend serving only the hash protocol; connections() gives {"peer", "received",
    "sha256"} (or {"peer", "error"}) per connection. Lives at most `lifetime` seconds."""

    def __init__(self, ns: Netns, address: str, port: int, *, log_name: str = "tcphash",
                 lifetime: float = 120.0):
        self.address, self.port = address, port
        self.backend = LbBackend(ns, f"hash{port}", hash=[port], bind=address, lifetime=lifetime,
                                 log_name=log_name)
        self.process = self.backend.process

    def connections(self) -> list[dict]:
        out = []
        for e in self.backend.log_entries():
            if e["kind"] not in ("hash", "hashed"):
                continue
            out.append({"peer": e["peer"], "error": e["error"]} if "error" in e else
                       {"peer": e["peer"], "received": e["received"], "sha256": e["sha256"]})
        return out


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


# --- load-balancing traffic: a backend server that says who it is, and its clients -----------
#
# LbBackend runs in a backend namespace and serves, on its bind address (default 0.0.0.0):
#   http ports  one request per connection ("GET /path ..."); answers "backend=<name>
#               path=<path> peer=<addr>:<port>" and closes
#   echo ports  greets with "hello <name>\n", then echoes every byte until the peer closes
#   hash ports  TcpHashServer's protocol (read to EOF; answer sha256 hex, newline, the data)
#   udp ports   answers each datagram with b"backend=<name> " + the datagram, from the address
#               the datagram was sent to (IP_PKTINFO), as a DSR backend holding the VIP must
# and logs one JSON line per connection/datagram: {"kind", "port", "peer", "sport", ...}.

_LB_BACKEND = r"""
import hashlib, json, socket, struct, sys, threading, time
cfg = json.loads(sys.argv[1])
name, lifetime, bind = cfg["name"], float(cfg["lifetime"]), cfg.get("bind", "0.0.0.0")
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
lock = threading.Lock()

def log(**kv):
    with lock:
        print(json.dumps(kv), flush=True)

def http(conn, peer, port):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        b = conn.recv(4096)
        if not b:
            break
        buf += b
    parts = buf.split(b"\r\n", 1)[0].decode(errors="replace").split()
    path = parts[1] if len(parts) >= 2 else ""
    body = f"backend={name} path={path} peer={peer[0]}:{peer[1]}\n".encode()
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % len(body) + body)
    log(kind="http", port=port, peer=peer[0], sport=peer[1], path=path)

def echo(conn, peer, port):
    conn.sendall(f"hello {name}\n".encode())
    n = 0
    try:
        while True:
            b = conn.recv(65536)
            if not b:
                break
            conn.sendall(b)
            n += len(b)
        log(kind="echo", port=port, peer=peer[0], sport=peer[1], bytes=n)
    except OSError as e:
        log(kind="echo", port=port, peer=peer[0], sport=peer[1], bytes=n, error=str(e))

def hashed(conn, peer, port):
    chunks = []
    while True:
        b = conn.recv(65536)
        if not b:
            break
        chunks.append(b)
    data = b"".join(chunks)
    digest = hashlib.sha256(data).hexdigest()
    conn.sendall(digest.encode() + b"\n" + data)
    conn.shutdown(socket.SHUT_WR)
    log(kind="hash", port=port, peer=peer[0], sport=peer[1], received=len(data), sha256=digest)

def handle(fn, conn, peer, port):
    conn.settimeout(60)
    try:
        fn(conn, peer, port)
    except OSError as e:
        log(kind=fn.__name__, port=port, peer=peer[0], sport=peer[1], error=str(e))
    finally:
        conn.close()

def serve_tcp(srv, fn, port):
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=handle, args=(fn, conn, peer, port), daemon=True).start()

def serve_udp(s, port):
    while True:
        data, anc, _, peer = s.recvmsg(65535, 64)
        dst = None
        for level, kind, value in anc:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                dst = value[8:12]          # struct in_pktinfo: ifindex, spec_dst, addr
        reply = f"backend={name} ".encode() + data
        if dst is not None:
            info = struct.pack("=i4s4s", 0, dst, b"\0" * 4)
            s.sendmsg([reply], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, peer)
        else:
            s.sendto(reply, peer)
        log(kind="udp", port=port, peer=peer[0], sport=peer[1],
            dst=socket.inet_ntoa(dst) if dst else None, bytes=len(data))

for kind, fn in (("http", http), ("echo", echo), ("hash", hashed)):
    for port in cfg.get(kind, []):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((bind, port))
        srv.listen(512)
        threading.Thread(target=serve_tcp, args=(srv, fn, port), daemon=True).start()
for port in cfg.get("udp", []):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind((bind, port))
    threading.Thread(target=serve_udp, args=(s, port), daemon=True).start()
print(json.dumps({"ready": name}), flush=True)
time.sleep(lifetime)
"""


class LbBackend:
    """A backend server (see _LB_BACKEND above) in a namespace; lives at most `lifetime` s.

        b = LbBackend(ns, "b1", http=[80, 8080], echo=[7000], hash=[9000], udp=[53])
        b.log_entries("http") -> [{"kind": "http", "port", "peer", "sport", "path"}, ...]"""

    def __init__(self, ns: Netns, name: str, *, http: list[int] = (), echo: list[int] = (),
                 hash: list[int] = (), udp: list[int] = (), lifetime: float = 120.0,
                 log_name: str | None = None, bind: str = "0.0.0.0"):
        self.ns, self.name = ns, name
        cfg = {"name": name, "lifetime": lifetime, "http": list(http), "echo": list(echo),
               "hash": list(hash), "udp": list(udp), "bind": bind}
        self.process = ns.spawn_python(_LB_BACKEND, json.dumps(cfg),
                                       log_name=log_name or f"backend-{name}")
        self.process.wait_output('{"ready"', timeout=10)

    def log_entries(self, kind: str | None = None) -> list[dict]:
        out = []
        for line in self.process.log().splitlines():
            if line.startswith('{"kind"'):
                e = json.loads(line)
                if kind is None or e["kind"] == kind:
                    out.append(e)
        return out


_HTTP_BURST = r"""
import collections, json, socket, sys, threading, time
addr, port, n, threads, timeout, budget = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                           int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
tag = sys.argv[7]
start = time.monotonic()
lock = threading.Lock()
results = []
todo = list(range(n))

def one(i):
    path = f"/{tag}/{i}"
    t0 = time.monotonic()
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
        try:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n".encode())
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        finally:
            s.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        fields = dict(f.split("=", 1) for f in body.decode(errors="replace").split() if "=" in f)
        ok = status.startswith("HTTP/1.0 200") and fields.get("path") == path
        return {"i": i, "ok": ok, "backend": fields.get("backend"), "peer": fields.get("peer"),
                "status": status, "seconds": time.monotonic() - t0}
    except OSError as e:
        return {"i": i, "ok": False, "error": f"{type(e).__name__}: {e}",
                "seconds": time.monotonic() - t0}

def worker():
    while time.monotonic() - start < budget:
        with lock:
            if not todo:
                return
            i = todo.pop(0)
        r = one(i)
        with lock:
            results.append(r)

ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print(json.dumps({"results": sorted(results, key=lambda r: r["i"]),
                  "seconds": time.monotonic() - start}))
"""


@dataclass
class HttpBurst:
    results: list[dict]
    seconds: float

    @property
    def ok(self) -> list[dict]:
        return [r for r in self.results if r["ok"]]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.results if not r["ok"]]

    def by_backend(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.ok:
            out[r["backend"]] = out.get(r["backend"], 0) + 1
        return out


def http_burst(ns: Netns, address: str, port: int, n: int, *, threads: int = 8,
               timeout: float = 5.0, budget: float = 30.0, tag: str = "req") -> HttpBurst:
    """From ns, make n HTTP/1.0 GETs to address:port (each its own TCP connection; `threads` at
    a time), stopping after `budget` seconds. Each result: {"i", "ok", "backend", "peer",
    "status", "seconds"} or {"i", "ok": False, "error"}; requests not started within the budget
    are missing from the results."""
    cp = ns.python(_HTTP_BURST, address, str(port), str(n), str(threads), str(timeout),
                   str(budget), tag, timeout=budget + timeout + 15)
    d = json.loads(cp.stdout)
    return HttpBurst(results=d["results"], seconds=d["seconds"])


_ECHO_CLIENTS = r"""
import json, os, socket, sys, time
addr, port, n, interval, duration, timeout = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                              float(sys.argv[4]), float(sys.argv[5]),
                                              float(sys.argv[6]))
conns = []
for i in range(n):
    c = {"i": i, "msgs": 0, "bytes": 0, "error": None, "max_gap": 0.0, "backend": None}
    try:
        s = socket.create_connection((addr, port), timeout=timeout)
        s.settimeout(timeout)
        f = s.makefile("rb")
        hello = f.readline().decode(errors="replace").split()
        c["backend"] = hello[1] if len(hello) == 2 and hello[0] == "hello" else None
        c["local_port"] = s.getsockname()[1]
        c["sock"], c["file"] = s, f
        if c["backend"] is None:
            c["error"] = f"bad greeting {hello!r}"
    except OSError as e:
        c["error"] = f"connect: {type(e).__name__}: {e}"
    conns.append(c)
print(json.dumps({"opened": [{k: c.get(k) for k in ("i", "backend", "local_port", "error")}
                             for c in conns]}), flush=True)
start = last_report = time.monotonic()
for c in conns:
    c["last_ok"] = start
seq = 0
while time.monotonic() - start < duration:
    seq += 1
    for c in conns:
        if c["error"]:
            continue
        msg = f"{c['i']}:{seq}:".encode() + os.urandom(24).hex().encode() + b"\n"
        try:
            c["sock"].sendall(msg)
            got = c["file"].read(len(msg))
        except OSError as e:
            c["error"] = f"seq {seq}: {type(e).__name__}: {e}"
            continue
        now = time.monotonic()
        if got != msg:
            c["error"] = f"seq {seq}: sent {msg!r}, got back {got!r}"
            continue
        c["max_gap"] = max(c["max_gap"], now - c["last_ok"])
        c["last_ok"] = now
        c["msgs"] += 1
        c["bytes"] += len(msg)
    now = time.monotonic()
    if now - last_report >= 1.0:
        last_report = now
        print(json.dumps({"t": round(now - start, 2), "seq": seq,
                          "errors": sum(1 for c in conns if c["error"])}), flush=True)
    time.sleep(max(0.0, interval - (time.monotonic() - now)))
for c in conns:
    if c.get("sock") is None:
        continue
    try:
        c["sock"].shutdown(socket.SHUT_WR)
        rest = c["file"].read()
        if rest and not c["error"]:
            c["error"] = f"{len(rest)} unexpected bytes after close"
    except OSError as e:
        if not c["error"]:
            c["error"] = f"close: {type(e).__name__}: {e}"
    c["sock"].close()
print(json.dumps({"done": [{k: c.get(k) for k in ("i", "backend", "local_port", "msgs", "bytes",
                                                  "max_gap", "error")} for c in conns],
                  "seconds": time.monotonic() - start, "rounds": seq}), flush=True)
"""


class EchoClients:
    """n long-lived TCP connections from a namespace to an LbBackend echo port (through a VIP),
    started in the background. Every `interval` s each connection sends a numbered message and
    checks that exactly the same bytes come back, for `duration` s; then it half-closes and
    expects EOF with nothing more.

        ec = EchoClients(client_ns, vip, 7000, n=20, duration=8)
        ec.opened()  -> [{"i", "backend", "local_port", "error"}]   (waits until all are open)
        ec.result()  -> {"done": [{"i", "backend", "msgs", "bytes", "max_gap", "error"}], ...}"""

    def __init__(self, ns: Netns, address: str, port: int, *, n: int = 20,
                 interval: float = 0.05, duration: float = 8.0, timeout: float = 5.0,
                 log_name: str = "echo-clients"):
        self.n, self.duration, self.timeout = n, duration, timeout
        self.process = ns.spawn_python(_ECHO_CLIENTS, address, str(port), str(n), str(interval),
                                       str(duration), str(timeout), log_name=log_name)

    def _line(self, key: str) -> dict | None:
        for line in self.process.log().splitlines():
            if line.startswith('{"' + key + '"'):
                return json.loads(line)
        return None

    def opened(self) -> list[dict]:
        self.process.wait_output('{"opened"', timeout=self.n * (self.timeout + 1) + 10)
        return self._line("opened")["opened"]

    def progress(self) -> list[dict]:
        return [json.loads(l) for l in self.process.log().splitlines() if l.startswith('{"t"')]

    def result(self) -> dict:
        self.process.wait_output('{"done"', timeout=self.duration + 2 * self.timeout + 20)
        return self._line("done")


_UDP_FLOWS = r"""
import json, os, socket, sys, time
addr, port, flows, per_flow, timeout = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                                        int(sys.argv[4]), float(sys.argv[5]))
sports = [int(p) for p in sys.argv[6].split(",")] if sys.argv[6] else [0] * flows
out = []
# Every socket stays open until the end: a closed socket's ephemeral port can be handed out
# again, which would make two "flows" one 5-tuple (and one connection entry).
sockets = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(s)
    s.bind(("0.0.0.0", sports[i]))
    s.settimeout(timeout)
    flow = {"i": i, "sport": s.getsockname()[1], "replies": [], "error": None}
    for j in range(per_flow):
        payload = f"flow {i} msg {j} ".encode() + os.urandom(8).hex().encode()
        s.sendto(payload, (addr, port))
        try:
            data, src = s.recvfrom(65535)
        except OSError as e:
            flow["error"] = f"msg {j}: {type(e).__name__}: {e}"
            break
        head, _, echoed = data.partition(b" ")
        flow["replies"].append({"src": f"{src[0]}:{src[1]}", "ok": echoed == payload,
                                "backend": head.decode(errors="replace").partition("=")[2]})
    out.append(flow)
for s in sockets:
    s.close()
print(json.dumps(out))
"""


def udp_flows(ns: Netns, address: str, port: int, *, flows: int = 30, per_flow: int = 3,
              timeout: float = 2.0, sports: list[int] | None = None) -> list[dict]:
    """From ns, `flows` UDP sockets (one source port each: ephemeral, or `sports`, which then
    sets the number of flows) send `per_flow` datagrams each to address:port, one at a time,
    waiting for each answer from an LbBackend udp port.
    -> [{"i", "sport", "replies": [{"src": "addr:port", "ok", "backend"}], "error"}]"""
    if sports:
        flows = len(sports)
    cp = ns.python(_UDP_FLOWS, address, str(port), str(flows), str(per_flow), str(timeout),
                   ",".join(str(p) for p in sports or []),
                   timeout=flows * per_flow * timeout + 15)
    return json.loads(cp.stdout)
