"""Helpers shared by the DPDK benchmarks in scripts/bench/ (rx-pps.py, fastpath.py).

Processes are started in their own session (a Ctrl-C on the terminal reaches only the driver,
which then stops them in order), with stdin closed: DPDK processes must not depend on it.
"""

from __future__ import annotations

import os
import signal
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
