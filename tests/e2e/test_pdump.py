"""End-to-end tests of packet capture with `dpdk-dumpcap` on a running tandemd (rte_pdump).

tandemd calls rte_pdump_init() after EAL init, so DPDK's dpdk-dumpcap, a secondary process
started with tandemd's --file-prefix, can ask it to copy the frames of a port to a ring and
write them to a pcapng file. What the tests found and rely on (DPDK 22.11, Debian's dpdk):

  - A secondary process cannot attach to a --no-huge primary: no-huge memory is an anonymous
    memfd no other process can open, and the primary writes no hugepage_info, so dumpcap stops
    with "EAL: FATAL: Cannot get hugepage information."
    (test_dumpcap_cannot_attach_to_a_no_huge_unit). Capture needs tandemd on hugepages:
    hugetlbfs mounted and free 2 MiB pages (tandemd's `-m 64` takes 32 of them at start;
    dumpcap's ring and mbuf pool, ~12 MiB per capture, come out of that heap, of which the
    unit uses 18 MiB).
  - dumpcap names ports by their DPDK device name (net_af_xdp0, net_af_xdp1, ... in the order
    of the [[port]] tables) or their port id, not by tandemd's port names. Its own EAL
    arguments are only --proc-type secondary --log-level notice [--file-prefix P]; the vdevs
    come from the primary over the multi-process channel.
  - 22.11's dumpcap captures one interface per process: with `-i 0 -i 1` only the last is
    captured. One dumpcap per port, side by side, works.
  - The stderr line "Packets captured: " appears once the capture is enabled in tandemd (the
    "Capturing on" line goes to stdout, which is block-buffered into a log). SIGINT stops it
    cleanly (exit 0, "Packets received/dropped on interface ..." and the file closed).

The lab (tandemlab.lb_lab, nat mode, one backend, AF_XDP ports):

    [client] A.1 ── A.2 north0 [unit: tandemd, hugepages] south0 B.1 ── [switch] ── B.21 [b1]
    VIP:80 -> B.21:8080 (web), VIP:9000 -> B.21:9000 (bulk, sha256-checked)

Hugepages: the test reserves what it needs on top of the free 2 MiB pages
(/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages, i.e. vm.nr_hugepages), mounts a
private hugetlbfs in the lab's scratch directory and gives tandemd `--huge-dir` to it, so that
its hugepage files live (and die, at umount) there. Both are undone when the lab closes, after
every process has stopped, whatever happened; a machine without hugetlbfs, or without enough
memory to reserve the pages, skips the test with the reason.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tandemlab as tl

DUMPCAP = shutil.which("dpdk-dumpcap")
needs_dumpcap = pytest.mark.skipif(DUMPCAP is None,
                                   reason="dpdk-dumpcap not installed (Debian package dpdk)")

HUGEPAGES_SYSFS = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
MEMORY_MB = 64               # tandemd's [eal] memory_mb (EAL -m): 32 pages taken at start
HUGEPAGES_NEEDED = 40        # 2 MiB pages free for the test: 32 + room to spare
CAPTURE_LIMIT_S = 30         # dumpcap's own bound (-a duration:), should SIGINT never come

A, B, VIP = "10.199.40", "10.199.41", "10.199.42.10"
WEB, WEB_NAT, BULK = 80, 8080, 9000


# --- a small pcapng reader (the blocks dpdk-dumpcap writes) -------------------------------------

SHB, IDB, EPB, ISB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
EPB_FLAGS_OPT = 2
IF_NAME, IF_MACADDR, IF_TSRESOL, IF_HARDWARE = 2, 6, 9, 15
DIRECTIONS = {0: "unknown", 1: "in", 2: "out"}


@dataclass
class Frame:
    interface: int
    timestamp: int           # in the interface's units (pcapng default: microseconds)
    data: bytes
    orig_len: int
    direction: str | None = None     # epb_flags bits 0-1, when written

    # Ethernet / IPv4 / TCP fields (None when the frame is not TCP over IPv4)
    eth_dst: str = ""
    eth_src: str = ""
    ethertype: int = 0
    src: str | None = None
    dst: str | None = None
    proto: int | None = None
    sport: int | None = None
    dport: int | None = None
    seq: int = 0
    flags: int = 0
    payload: bytes = b""


@dataclass
class Pcapng:
    # {"linktype", "snaplen", "name", "mac", "tsresol", "hardware"} per IDB, in file order
    interfaces: list[dict] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    stats: list[dict] = field(default_factory=list)        # {"interface", "options"}


def _options(body: bytes, endian: str) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, i)
        if code == 0:
            break
        out.append((code, body[i + 4:i + 4 + length]))
        i += 4 + ((length + 3) & ~3)
    return out


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _decode(f: Frame) -> None:
    d = f.data
    if len(d) < 14:
        return
    f.eth_dst, f.eth_src = _mac(d[0:6]), _mac(d[6:12])
    f.ethertype = struct.unpack_from("!H", d, 12)[0]
    if f.ethertype != 0x0800 or len(d) < 34:
        return
    ihl = (d[14] & 0x0F) * 4
    total = struct.unpack_from("!H", d, 16)[0]
    f.proto = d[23]
    f.src, f.dst = ".".join(map(str, d[26:30])), ".".join(map(str, d[30:34]))
    ip_end = min(len(d), 14 + total)
    l4 = 14 + ihl
    if f.proto == 6 and ip_end >= l4 + 20:
        f.sport, f.dport, f.seq = struct.unpack_from("!HHI", d, l4)
        off = (d[l4 + 12] >> 4) * 4
        f.flags = d[l4 + 13]
        f.payload = d[l4 + off:ip_end]


def read_pcapng(path: Path) -> Pcapng:
    """Parse a pcapng file: section header, interface descriptions, enhanced packets and
    interface statistics. A truncated last block (a file still being written) is ignored."""
    data = path.read_bytes()
    out, i, endian = Pcapng(), 0, "<"
    while i + 12 <= len(data):
        btype = struct.unpack_from("<I", data, i)[0]
        if btype == SHB:
            magic = data[i + 8:i + 12]
            endian = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            assert magic in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"), f"bad SHB at {i}"
        btype, blen = struct.unpack_from(endian + "II", data, i)
        if blen < 12 or blen % 4 or i + blen > len(data):
            break                                      # truncated: still being written
        assert struct.unpack_from(endian + "I", data, i + blen - 4)[0] == blen, f"block at {i}"
        body = data[i + 8:i + blen - 4]
        if btype == IDB:
            linktype, _, snaplen = struct.unpack_from(endian + "HHI", body, 0)
            opts = dict(_options(body[8:], endian))
            out.interfaces.append({
                "linktype": linktype, "snaplen": snaplen,
                "name": opts.get(IF_NAME, b"").rstrip(b"\0").decode(errors="replace"),
                "mac": _mac(opts[IF_MACADDR]) if len(opts.get(IF_MACADDR, b"")) == 6 else None,
                "tsresol": opts[IF_TSRESOL][0] if IF_TSRESOL in opts else 6,
                "hardware": opts.get(IF_HARDWARE, b"").rstrip(b"\0").decode(errors="replace")})
        elif btype == EPB:
            ifid, ts_hi, ts_lo, caplen, origlen = struct.unpack_from(endian + "IIIII", body, 0)
            frame = Frame(interface=ifid, timestamp=(ts_hi << 32) | ts_lo,
                          data=body[20:20 + caplen], orig_len=origlen)
            for code, value in _options(body[20 + ((caplen + 3) & ~3):], endian):
                if code == EPB_FLAGS_OPT and len(value) == 4:
                    frame.direction = DIRECTIONS[struct.unpack(endian + "I", value)[0] & 3]
            _decode(frame)
            out.frames.append(frame)
        elif btype == ISB:
            out.stats.append({"interface": struct.unpack_from(endian + "I", body, 0)[0],
                              "options": _options(body[12:], endian)})
        i += blen
    return out


def tcp_stream(frames: list[Frame], src: str, sport: int, dst: str, dport: int) -> bytes:
    """The payload bytes of one direction of a TCP connection, in sequence order, each byte
    once (retransmissions overlap)."""
    segs = sorted({(f.seq, f.payload) for f in frames
                   if (f.src, f.sport, f.dst, f.dport) == (src, sport, dst, dport) and f.payload})
    if not segs:
        return b""
    base, out = segs[0][0], bytearray()
    for seq, payload in segs:
        off = (seq - base) & 0xFFFFFFFF
        if off + len(payload) > len(out):
            out[off:] = payload[max(0, len(out) - off):] if off <= len(out) else \
                bytes(off - len(out)) + payload
    return bytes(out)


SYN, ACK, FIN = 0x02, 0x10, 0x01


# --- hugepages and dumpcap -------------------------------------------------------------------

def _read_int(path: Path) -> int:
    return int(path.read_text().split()[0])


def hugepages_for(lab: tl.Lab, pages: int) -> Path:
    """Make `pages` 2 MiB hugepages free (reserving only what is missing), mount a private
    hugetlbfs in the lab's workdir and return it. Undone at lab.close(), after tandemd and
    dumpcap have stopped: umount (frees every page tandemd's files still hold), then
    nr_hugepages back to what it was. Skips when the machine cannot do it."""
    if "hugetlbfs" not in Path("/proc/filesystems").read_text():
        pytest.skip("dpdk-dumpcap needs tandemd on hugepages, and this kernel has no hugetlbfs")
    if not HUGEPAGES_SYSFS.is_dir():
        pytest.skip(f"no 2 MiB hugepage pool ({HUGEPAGES_SYSFS} missing)")
    nr_path, free_path = HUGEPAGES_SYSFS / "nr_hugepages", HUGEPAGES_SYSFS / "free_hugepages"
    old_nr, free = _read_int(nr_path), _read_int(free_path)
    if free < pages:
        def restore_nr() -> None:
            # Pages still in use stay (as surplus) until freed, and the kernel frees the pages
            # of an unmounted hugetlbfs asynchronously: write again until the value holds.
            deadline = time.monotonic() + 10
            while True:
                nr_path.write_text(str(old_nr))
                now = _read_int(nr_path)
                if now == old_nr:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not restore {nr_path} to {old_nr} (it is {now})")
                time.sleep(0.1)
        lab.on_close(restore_nr)
        nr_path.write_text(str(old_nr + pages - free))
        got = _read_int(free_path)
        if got < pages:
            pytest.skip(f"dpdk-dumpcap needs tandemd on hugepages: could reserve only {got} of "
                        f"{pages} free 2 MiB pages (nr_hugepages {old_nr} -> "
                        f"{_read_int(nr_path)}); memory too fragmented?")
    mnt = lab.workdir / "hugepages"
    mnt.mkdir()
    tl.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(mnt)], timeout=10)

    def umount() -> None:
        cp = tl.run(["umount", str(mnt)], check=False, timeout=10)
        if cp.returncode != 0:
            tl.run(["umount", "-l", str(mnt)], check=False, timeout=10)
            raise RuntimeError(f"umount {mnt}: {cp.stderr.strip()} (lazily unmounted)")
    lab.on_close(umount)
    return mnt


def dumpcap_argv(prefix: str, interface: str, out: Path, bpf: str | None = None) -> list[str]:
    argv = [DUMPCAP, f"--file-prefix={prefix}", "-i", interface, "-w", str(out),
            "-a", f"duration:{CAPTURE_LIMIT_S}"]
    return argv + (["-f", bpf] if bpf else [])


def start_dumpcap(ns: tl.Netns, prefix: str, interface: str, out: Path, bpf: str | None,
                  log_name: str, *extra: str) -> tl.Background:
    """dpdk-dumpcap in tandemd's namespace, in the background, returned once tandemd has
    enabled the capture. (From another namespace it captures too, but cannot set the kernel
    interface promiscuous, ENODEV, and names the interfaces in the file wrongly.)"""
    p = ns.spawn(dumpcap_argv(prefix, interface, out, bpf) + list(extra), log_name=log_name)
    p.wait_output("Packets captured:", timeout=15)
    return p


def stop_dumpcap(p: tl.Background) -> dict:
    """SIGINT, as Ctrl-C would; -> {"interface", "received", "dropped"} from its last line."""
    rc = p.stop(timeout=10, sig=signal.SIGINT)
    log = p.log()
    assert rc == 0, f"{p.name} exited {rc}:\n{log}"
    m = re.search(r"Packets received/dropped on interface '([^']+)': (\d+)/(\d+)", log)
    assert m, f"{p.name} printed no capture summary:\n{log}"
    return {"interface": m.group(1), "received": int(m.group(2)), "dropped": int(m.group(3))}


def promiscuous(ns: tl.Netns, ifname: str) -> bool:
    return "PROMISC" in ns.ip_json("link", "show", "dev", ifname)[0]["flags"]


# --- traffic -----------------------------------------------------------------------------------

_HTTP_GET = r"""
import json, socket, sys
addr, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((addr, port), timeout=5)
request = f"GET {path} HTTP/1.0\r\nHost: pdump\r\n\r\n".encode()
s.sendall(request)
reply = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    reply += b
print(json.dumps({"local": s.getsockname(), "request": request.decode(), "reply": reply.decode()}))
"""


def http_get(ns: tl.Netns, address: str, port: int, path: str) -> dict:
    cp = ns.python(_HTTP_GET, address, str(port), path, timeout=15)
    return json.loads(cp.stdout)


def start_lab(lab: tl.Lab, hugedir: Path) -> tuple[tl.LbLab, tl.LbBackend]:
    svc = [tl.ServiceConfig("web", VIP, port=WEB, mode="nat",
                            backends=[tl.BackendConfig(f"{B}.21", port=WEB_NAT)]),
           tl.ServiceConfig("bulk", VIP, port=BULK, mode="nat", maglev_size=251,
                            backends=[tl.BackendConfig(f"{B}.21")])]
    t = tl.lb_lab(lab, "nat", subnet_a=A, subnet_b=B, vip=VIP, n_backends=1, services=svc,
                  conntrack={"capacity": 4096}, no_huge=False, memory_mb=MEMORY_MB,
                  extra_eal_args=["--huge-dir", str(hugedir)])
    server = tl.LbBackend(t.backends[0].ns, "b1", http=[WEB_NAT], hash=[BULK],
                          log_name="server-b1")
    return t, server


# --- tests -------------------------------------------------------------------------------------

@pytest.mark.offline
def test_pcapng_reader_and_stream_reassembly(tmp_path):
    """The reader on a hand-made file: SHB, IDB with if_name, two EPBs (one with epb_flags)."""
    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    def opt(code: int, value: bytes) -> bytes:
        return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)

    def tcp_frame(seq: int, payload: bytes) -> bytes:
        tcp = struct.pack("!HHIIBBHHH", 40000, 80, seq, 0, 5 << 4, 0x18, 1000, 0, 0) + payload
        ip = tl.ipv4_packet("10.0.0.1", "10.0.0.2", 6, tcp)
        return tl.ether_frame("02:00:00:00:00:02", "02:00:00:00:00:01", ip)

    def epb(data: bytes, opts: bytes = b"") -> bytes:
        return block(EPB, struct.pack("<IIIII", 0, 0, 7, len(data), len(data)) + data
                     + bytes(-len(data) % 4) + opts + (struct.pack("<HH", 0, 0) if opts else b""))

    f = tmp_path / "x.pcapng"
    f.write_bytes(block(SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
                  + block(IDB, struct.pack("<HHI", 1, 0, 2176) + opt(2, b"net_af_xdp0")
                          + struct.pack("<HH", 0, 0))
                  + epb(tcp_frame(1000, b"hello "), opt(2, struct.pack("<I", 1)))
                  + epb(tcp_frame(1006, b"world"))
                  + epb(tcp_frame(1000, b"hello "))      # a retransmission
                  + struct.pack("<II", EPB, 64) + bytes(16))   # a block still being written
    cap = read_pcapng(f)
    assert cap.interfaces == [{"linktype": 1, "snaplen": 2176, "name": "net_af_xdp0", "mac": None,
                               "tsresol": 6, "hardware": ""}]
    assert len(cap.frames) == 3
    fr = cap.frames[0]
    assert (fr.eth_src, fr.eth_dst, fr.src, fr.dst, fr.sport, fr.dport, fr.seq, fr.payload,
            fr.direction, fr.timestamp) == ("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1",
                                            "10.0.0.2", 40000, 80, 1000, b"hello ", "in", 7)
    assert cap.frames[1].direction is None
    assert tcp_stream(cap.frames, "10.0.0.1", 40000, "10.0.0.2", 80) == b"hello world"


@needs_dumpcap
def test_dumpcap_cannot_attach_to_a_no_huge_unit(lab, subnet):
    """The lab's default (--no-huge) unit: tandemd says at start that capture is unavailable,
    no secondary process can attach, and the failed attempt leaves tandemd forwarding."""
    t = tl.client_and_unit(lab, subnet=subnet)
    assert "--no-huge" in t.unit.log(), t.unit.log()
    assert "packet capture (dpdk-dumpcap) unavailable: eal.no_huge" in t.unit.log(), t.unit.log()
    cp = t.unit_ns.run([DUMPCAP, f"--file-prefix={t.unit.file_prefix}", "-D"], check=False,
                       timeout=20)
    assert cp.returncode != 0, cp.stdout
    assert "Cannot get hugepage information" in cp.stderr, cp.stderr
    assert t.unit.running()
    assert tl.ping(t.client, t.unit_ip, count=2).received == 2


@needs_dumpcap
def test_dumpcap_captures_a_nat_flow_on_both_ports(lab):
    hugedir = hugepages_for(lab, HUGEPAGES_NEEDED)
    t, server = start_lab(lab, hugedir)
    unit, prefix = t.unit, t.unit.file_prefix
    assert f"--huge-dir {hugedir}" in unit.log() and "--no-huge" not in unit.log(), unit.log()
    assert "packet capture" not in unit.log(), unit.log()      # no "unavailable" line

    # Ports are listed by DPDK device name, in [[port]] order: north0 = 0, south0 = 1.
    cp = t.unit_ns.run([DUMPCAP, f"--file-prefix={prefix}", "-D"], timeout=20)
    assert re.findall(r"^\s*(\d+)\. (\S+)", cp.stdout, re.M) == [("0", "net_af_xdp0"),
                                                                  ("1", "net_af_xdp1")], cp

    # One dumpcap per port (22.11's captures only the last -i), each with a BPF filter; the
    # north one with -p (leave the interface's promiscuous mode alone, as docs advise), the
    # south one with dumpcap's default (promiscuous while capturing, restored at the end).
    north_file, south_file = lab.workdir / "north0.pcapng", lab.workdir / "south0.pcapng"
    north = start_dumpcap(t.unit_ns, prefix, "net_af_xdp0", north_file, f"tcp port {WEB}",
                          "dumpcap-north0", "-p")
    south = start_dumpcap(t.unit_ns, prefix, "1", south_file, f"tcp port {WEB_NAT}",
                          "dumpcap-south0")
    assert not promiscuous(t.unit_ns, t.unit_north_if)
    assert promiscuous(t.unit_ns, t.unit_south_if)
    before = unit.counters()

    # Traffic while capturing: the HTTP GET under test, then traffic the filters must leave
    # out (a sha256-checked 256 KiB exchange on the bulk service, pings to the unit).
    path = f"/pdump/{lab.tag}"
    got = http_get(t.client, VIP, WEB, path)
    client_port = got["local"][1]
    body = f"backend=b1 path={path} peer={A}.1:{client_port}\n"
    assert got["reply"].startswith("HTTP/1.0 200 OK\r\n"), got
    assert got["reply"].endswith("\r\n\r\n" + body), got
    size, seed = 256 * 1024, 11
    res = tl.tcp_hash_exchange(t.client, VIP, BULK, size, seed=seed, timeout=15)
    want = tl.expected_sha256(size, seed)
    assert (res["sent_sha256"], res["server_sha256"], res["echo_sha256"], res["echo_len"]) == \
        (want, want, want, size), res
    assert tl.ping(t.client, t.unit_north_ip, count=2, interval=0.2).received == 2

    # Wait until both files hold the whole GET flow (dumpcap drains its ring asynchronously
    # and SIGINT drops what is still in it), then stop both.
    def complete(f: Path, src: str, sport: int, dst: str, dport: int) -> bool:
        frames = read_pcapng(f).frames if f.exists() else []
        fins = {(x.src, x.sport) for x in frames if x.proto == 6 and x.flags & FIN}
        return (tcp_stream(frames, src, sport, dst, dport) == got["request"].encode()
                and tcp_stream(frames, dst, dport, src, sport) == got["reply"].encode()
                and fins == {(src, sport), (dst, dport)})
    tl.wait_until(lambda: complete(north_file, f"{A}.1", client_port, VIP, WEB)
                  and complete(south_file, f"{A}.1", client_port, f"{B}.21", WEB_NAT),
                  timeout=5, interval=0.1, what="both captures to hold the GET flow")
    stats = {"north0": stop_dumpcap(north), "south0": stop_dumpcap(south)}
    assert stats["north0"]["interface"] == "net_af_xdp0", stats
    assert stats["south0"]["interface"] == "net_af_xdp1", stats
    assert all(s["dropped"] == 0 for s in stats.values()), stats
    assert not promiscuous(t.unit_ns, t.unit_south_if), "dumpcap left south0 promiscuous"

    macs = {"client": t.client.mac(t.client_if), "north": t.unit_ns.mac(t.unit_north_if),
            "south": t.unit_ns.mac(t.unit_south_if), "b1": t.backends[0].mac}
    sides = {
        # port: (port id, file, the client's end of the flow, the server's end,
        #        MACs of the frames towards the server, MACs of those towards the client)
        "north0": (0, north_file, (f"{A}.1", client_port), (VIP, WEB),
                   (macs["client"], macs["north"]), (macs["north"], macs["client"])),
        "south0": (1, south_file, (f"{A}.1", client_port), (f"{B}.21", WEB_NAT),
                   (macs["south"], macs["b1"]), (macs["b1"], macs["south"])),
    }
    for port, (pid, f, (csrc, cport), (sdst, sport), to_server_macs, to_client_macs) in \
            sides.items():
        cap = read_pcapng(f)
        # one IDB per DPDK port, in port-id order: the kernel interface, MAC and vdev name;
        # timestamps in nanoseconds
        assert [(i["name"], i["mac"], i["hardware"], i["linktype"], i["tsresol"])
                for i in cap.interfaces] == [
            (t.unit_north_if, macs["north"], "vdev-net_af_xdp0", 1, 9),
            (t.unit_south_if, macs["south"], "vdev-net_af_xdp1", 1, 9)], cap.interfaces
        frames = cap.frames
        assert frames and {fr.interface for fr in frames} == {pid}, (port, len(frames))
        # the filter let this flow's frames through, nothing else: no ARP, ICMP, bulk transfer
        assert all(fr.proto == 6 for fr in frames), [(fr.ethertype, fr.proto) for fr in frames]
        ends = {(csrc, cport), (sdst, sport)}
        others = [(x.src, x.sport, x.dst, x.dport) for x in frames
                  if {(x.src, x.sport), (x.dst, x.dport)} != ends]
        assert not others, f"{port}: frames of other flows: {others}"
        assert stats[port]["received"] >= len(frames), (port, stats, len(frames))
        to_server = [fr for fr in frames if (fr.src, fr.sport) == (csrc, cport)]
        to_client = [fr for fr in frames if (fr.src, fr.sport) == (sdst, sport)]
        # the handshake, and every byte of the request and of the reply
        assert to_server[0].flags & (SYN | ACK) == SYN, port
        assert any(fr.flags & (SYN | ACK) == SYN | ACK for fr in to_client), port
        assert tcp_stream(frames, csrc, cport, sdst, sport) == got["request"].encode(), port
        assert tcp_stream(frames, sdst, sport, csrc, cport) == got["reply"].encode(), port
        # Ethernet addresses and direction: north0 receives the client's frames and sends
        # the answers; south0 sends to the backend and receives its replies
        assert {(fr.eth_src, fr.eth_dst) for fr in to_server} == {to_server_macs}, port
        assert {(fr.eth_src, fr.eth_dst) for fr in to_client} == {to_client_macs}, port
        towards_server = "in" if port == "north0" else "out"
        towards_client = "out" if port == "north0" else "in"
        assert {fr.direction for fr in to_server} == {towards_server}, port
        assert {fr.direction for fr in to_client} == {towards_client}, port

    # tandemd forwarded throughout, and dropped nothing for want of room while copying
    after = unit.counters()
    assert after["drops"]["tx_full"] == before["drops"]["tx_full"], after["drops"]
    assert after["drops"]["no_mbuf"] == before["drops"]["no_mbuf"], after["drops"]
    assert server.log_entries("http")[-1]["path"] == path

    # tandemd stopping in the middle of a capture: it exits as usual, dumpcap notices and
    # exits by itself with its file complete. The runtime dir and the hugepage files stay
    # behind (for secondaries); the next start with the same prefix takes them over, and
    # dumpcap attaches to the new tandemd.
    late_file = lab.workdir / "south0-late.pcapng"
    late = start_dumpcap(t.unit_ns, prefix, "net_af_xdp1", late_file, None, "dumpcap-late")
    http_get(t.client, VIP, WEB, path + "/late")
    tl.wait_until(lambda: any(fr.payload.startswith(f"GET {path}/late ".encode())
                              for fr in read_pcapng(late_file).frames),
                  timeout=5, interval=0.1, what="the late capture to hold the GET")
    assert unit.stop() == 0, unit.log()
    tl.wait_until(lambda: late.poll() is not None, timeout=5, interval=0.1,
                  what="dumpcap to exit after tandemd")
    assert late.returncode == 0 and "Primary process is no longer active" in late.log(), \
        late.log()
    assert any(fr.payload.startswith(f"GET {path}/late ".encode())
               for fr in read_pcapng(late_file).frames)
    assert (tl.socket_path(prefix).parent / "hugepage_info").exists()
    assert any(hugedir.glob(f"{prefix}map_*")), sorted(hugedir.iterdir())
    unit.start()
    # make the client and the backend ARP again, so the restarted unit learns their MACs
    t.client.ip("neigh", "flush", "dev", t.client_if)
    t.backends[0].ns.ip("neigh", "flush", "dev", t.backends[0].ifname)
    tl.warm_neighbours(t)
    cp = t.unit_ns.run([DUMPCAP, f"--file-prefix={prefix}", "-D"], timeout=20)
    assert "0. net_af_xdp0" in cp.stdout, cp
    again = http_get(t.client, VIP, WEB, path + "/again")
    assert again["reply"].endswith(f"path={path}/again peer={A}.1:{again['local'][1]}\n"), again
