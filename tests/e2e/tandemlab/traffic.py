"""Traffic from kernel namespaces (ping, arping) with parsed, bounded results."""

from __future__ import annotations

import re
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
