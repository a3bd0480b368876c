"""Running tandemd inside a lab namespace: config file, sd_notify readiness, telemetry, stop."""

from __future__ import annotations

import os
import re
import select
import socket
import time
from pathlib import Path
from typing import Any

from .config import UnitConfig
from .lab import Background, Lab, Netns
from .proc import run, wait_until
from .telemetry import (RUNTIME_ROOT, TelemetryClient, parse_counters, parse_neighbours,
                        socket_path)

READY_LOG_LINE = "tandemd ready"
FINAL_COUNTERS_MARK = "final counters"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_binary() -> Path:
    """$TANDEMD if set, else <repo>/build/controlplane/tandemd."""
    env = os.environ.get("TANDEMD")
    return Path(env) if env else repo_root() / "build" / "controlplane" / "tandemd"


class TandemdError(RuntimeError):
    pass


class NotifySocket:
    """The receiving end of the sd_notify protocol: an AF_UNIX datagram socket at a path.

    The path must be visible from where tandemd runs; `ip netns exec` gives the child its own
    mount namespace but shares /tmp, so a path under the lab's workdir (in /tmp) works."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if len(str(self.path).encode()) > 107:
            raise ValueError(f"notify socket path too long for sun_path: {self.path}")
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o777)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float, proc: Background | None = None) -> str:
        """Wait until a datagram contains `line` as one of its lines; return that datagram.
        Fails early (TandemdError) if proc exits first, TimeoutError after timeout."""
        deadline = time.monotonic() + timeout
        for m in self.messages:
            if line in m.splitlines():
                return m
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {line!r} on {self.path} within {timeout:g}s "
                                   f"(got: {self.messages!r})")
            r, _, _ = select.select([self.sock], [], [], min(left, 0.1))
            if r:
                data = self.sock.recv(65536).decode(errors="replace")
                self.messages.append(data)
                if line in data.splitlines():
                    return data
            elif proc is not None and proc.poll() is not None:
                raise TandemdError(f"process exited with status {proc.returncode} before "
                                   f"sending {line!r}")

    def close(self) -> None:
        self.sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def check_config(config_path: str | Path, binary: str | Path | None = None):
    """`tandemd --check-config FILE`; returns the CompletedProcess (never raises on exit 1)."""
    return run([str(binary or default_binary()), "--check-config", str(config_path)],
               check=False, timeout=20)


class Tandemd:
    """One tandemd process in a namespace of a Lab.

        unit = Tandemd(lab, ns_unit, cfg)
        unit.start()                 # waits for READY=1
        unit.counters()["handled"]["icmp_echo_replies_sent"]
        unit.stop()                  # SIGTERM, expects exit 0
    """

    def __init__(self, lab: Lab, ns: Netns, config: UnitConfig,
                 binary: str | Path | None = None):
        self.lab = lab
        self.ns = ns
        self.config = config
        self.binary = Path(binary) if binary else default_binary()
        self.name = config.name
        self.config_path = lab.workdir / f"{self.name}.toml"
        self.config_path.write_text(config.to_toml())
        self.process: Background | None = None
        self.notify: NotifySocket | None = None
        self.ready_message: str | None = None

    def __repr__(self) -> str:
        return f"Tandemd({self.name!r} in {self.ns.name})"

    @property
    def file_prefix(self) -> str:
        return self.config.file_prefix

    @property
    def telemetry_path(self) -> Path:
        return socket_path(self.file_prefix)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = 30.0) -> "Tandemd":
        if not self.binary.exists():
            raise TandemdError(f"tandemd binary not found: {self.binary} (build it first)")
        if self.process is not None:
            raise TandemdError(f"{self} already started")
        self.notify = NotifySocket(self.lab.workdir / f"notify-{self.name}.sock")
        self.lab.on_close(self.notify.close)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        self.lab.add_runtime_dir(RUNTIME_ROOT / self.file_prefix)
        self.process = self.ns.spawn([str(self.binary), "--config", str(self.config_path)],
                                     log_name=self.name, env=env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> str:
        assert self.process is not None and self.notify is not None, "start() first"
        try:
            self.ready_message = self.notify.wait_for("READY=1", timeout, self.process)
        except (TimeoutError, TandemdError) as e:
            raise TandemdError(f"{self.name} did not become ready: {e}\n"
                               f"--- {self.process.log_path} (last 60 lines) ---\n"
                               + "\n".join(self.log().splitlines()[-60:])) from None
        return self.ready_message

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit status."""
        if self.process is None:
            return 0
        rc = self.process.stop(timeout=timeout)
        if self.notify is not None:
            self.notify.close()
        return rc

    def kill(self) -> int:
        assert self.process is not None
        return self.process.kill()

    def log(self) -> str:
        return self.process.log() if self.process else ""

    def final_counters_log(self) -> str:
        """The log from the line containing 'final counters' to the end ('' if absent)."""
        lines = self.log().splitlines()
        for i, line in enumerate(lines):
            if FINAL_COUNTERS_MARK in line:
                return "\n".join(lines[i:])
        return ""

    # -- telemetry ----------------------------------------------------------------------------
    def telemetry(self, cmd: str, timeout: float = 5.0) -> Any:
        with TelemetryClient(path=self.telemetry_path, timeout=timeout) as c:
            return c.query(cmd)

    def counters(self) -> dict:
        """/tandem/counters as {"ports": [{"name", "rx_packets", ...}], "handled": {...},
        "drops": {...}, "workers": {...}, "neighbour": {...}} (see telemetry.parse_counters)."""
        return parse_counters(self.telemetry("/tandem/counters"),
                                  port_names=[p.name for p in self.config.ports])

    def neighbours(self) -> list[dict]:
        """/tandem/neighbours as [{"port", "address", "mac", "state", "age_ms"}, ...]."""
        return parse_neighbours(self.telemetry("/tandem/neighbours"))

    def info(self) -> dict:
        return self.telemetry("/tandem/info")

    def port_counters(self, port: str | None = None) -> dict:
        """Counters of one port (by name; the first port if None)."""
        ports = self.counters().get("ports", [])
        port = port or self.config.ports[0].name
        for p in ports:
            if p.get("name") == port:
                return p
        raise LookupError(f"port {port!r} not in /tandem/counters ports {ports!r}")

    def neighbour(self, address: str, port: str | None = None) -> dict | None:
        for n in self.neighbours():
            if n.get("address") == address and (port is None or n.get("port") == port):
                return n
        return None

    def wait_neighbour(self, address: str, *, mac: str | None = None,
                       states: tuple[str, ...] = ("reachable",), timeout: float = 5.0) -> dict:
        """Wait until the unit's neighbour table has address (with mac, in one of states)."""
        def ok():
            n = self.neighbour(address)
            if n and n.get("state") in states and (mac is None or n.get("mac", "").lower() == mac):
                return n
            return None
        return wait_until(ok, timeout=timeout,
                          what=f"{self.name} to list neighbour {address} {mac or ''} {states}")


def parse_counter_lines(text: str) -> dict[str, int]:
    """Pull 'name: N' / 'name=N' pairs out of a log block (for the final-counters block)."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_.]*)\s*[:=]\s*(\d+)\b", text)}


__all__ = ["Tandemd", "TandemdError", "NotifySocket", "check_config", "default_binary",
           "repo_root", "parse_counter_lines", "READY_LOG_LINE", "FINAL_COUNTERS_MARK"]
