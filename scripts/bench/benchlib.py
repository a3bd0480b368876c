"""Helpers shared by the DPDK benchmarks in scripts/bench/ (rx-pps.py, fastpath.py, sync.py).

Processes are started in their own session (a Ctrl-C on the terminal reaches only the driver,
which then stops them in order), with stdin closed: DPDK processes must not depend on it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from tandemlab.telemetry import RUNTIME_ROOT, TelemetryError, telemetry  # noqa: E402,F401

# No hugepages, no PCI scan, 512 MiB: what runs on the development VM and in CI.
EAL_COMMON = ["--no-huge", "--no-pci", "-m", "512"]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(p: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after timeout. Only this process: never a name or a group."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for_port(prefix: str, timeout: float = 20.0, proc: subprocess.Popen | None = None,
                  port: int = 0) -> None:
    """Wait until the DPDK process with file prefix `prefix` answers /ethdev/stats for `port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{prefix}: exited with status {proc.returncode}")
        try:
            telemetry(f"/ethdev/stats,{port}", prefix)
            return
        except (TelemetryError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"{prefix}: no ethdev telemetry after {timeout}s")


def median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def vm_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def require_root() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (DPDK, /var/run/dpdk)")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method: a value that was observed."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    rank = max(1, -(-len(s) * q // 100))  # ceil(n * q / 100), at least 1
    return s[int(rank) - 1]


class CtlClient:
    """One connection to a tandemd ctl socket (docs/ctl-protocol.md: a JSON object per line each
    way), kept open for many requests: what `tandemctl --json CMD` prints is `call(cmd)`, without
    starting a process per sample."""

    def __init__(self, path: str | Path, timeout: float = 5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")
        self.next_id = 0

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, cmd: str, args: dict | None = None) -> dict:
        """The command's result; RuntimeError when the daemon refuses it or closes the socket."""
        self.next_id += 1
        req = {"v": 1, "id": self.next_id, "cmd": cmd}
        if args:
            req["args"] = args
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        line = self.reader.readline()
        if not line:
            raise RuntimeError(f"ctl {cmd}: the daemon closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"ctl {cmd}: {reply.get('error')}")
        return reply["result"]


def wait_for_ctl(path: str | Path, timeout: float = 30.0,
                 proc: subprocess.Popen | None = None) -> CtlClient:
    """A CtlClient once the daemon serves its ctl socket (it opens it last when starting)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{path}: the daemon exited with status {proc.returncode}")
        try:
            return CtlClient(path)
        except OSError:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no ctl socket {path} after {timeout:.0f}s") from None
            time.sleep(0.1)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, tuple[str, int, int]]:
    """Per thread of pid: {tid: (name, ns on a CPU, ns runnable but waiting for one)}, from
    /proc/PID/task/TID/schedstat (nanoseconds); without schedstat, the on-CPU time from stat's
    utime + stime (clock ticks) and the wait as 0. Threads that end meanwhile are left out."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            try:
                run_ns, wait_ns = (int(v) for v in (task / "schedstat").read_text().split()[:2])
            except FileNotFoundError:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                run_ns = (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLOCK_TICKS
                wait_ns = 0
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[int(task.name)] = (name, run_ns, wait_ns)
    return out


def thread_affinity(pid: int, tid: int) -> str:
    """The CPUs a thread may run on, as /proc lists them ("1", "0-1")."""
    for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    return "?"
