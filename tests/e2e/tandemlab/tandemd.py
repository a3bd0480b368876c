"""Running tandemd inside a lab namespace: config file, sd_notify readiness, telemetry, stop."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

from .config import UnitConfig
from .lab import Background, Lab, Netns
from .proc import run, wait_until
from .telemetry import (RUNTIME_ROOT, TelemetryClient, parse_blocklist, parse_counters,
                        parse_neighbours, socket_path)

READY_LOG_LINE = "tandemd ready"
FINAL_COUNTERS_MARK = "final counters"
# What tandemd logs on SIGHUP (docs/operations.md): the first line, and the lines that end a
# reload that changed nothing or was refused. A reload that changed something logs one line per
# change ("port <name>: addresses <old> -> <new>", "xdp blocklist: <old> -> <new>",
# "log level: <old> -> <new>", "reload: <key> changed; it takes effect at the next restart").
RELOAD_LOG_LINE = "reloading "
RELOAD_UNCHANGED = "reload: nothing changed"
RELOAD_REFUSED = "reload refused"
STALE_STEERING_LOG = "detached a stale tandem_steer program"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[3]


def default_binary() -> Path:
    """$TANDEMD if set, else <repo>/build/controlplane/tandemd."""
    env = os.environ.get("TANDEMD")
    return Path(env) if env else repo_root() / "build" / "controlplane" / "tandemd"


def tandemctl_binary() -> Path:
    """$TANDEMCTL if set, else tandemctl beside the tandemd binary."""
    env = os.environ.get("TANDEMCTL")
    return Path(env) if env else default_binary().parent / "tandemctl"


class CtlError(RuntimeError):
    """tandemctl exited non-zero: .code is its exit status (1 refused, 2 usage, 3 unreachable)."""

    def __init__(self, code: int, stderr: str, stdout: str):
        super().__init__(f"tandemctl exited {code}: {stderr.strip()}")
        self.code = code
        self.stderr = stderr
        self.stdout = stdout


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
        if config.ctl_socket is None:
            config.ctl_socket = str(lab.workdir / f"ctl-{self.name}.sock")
        self.config_path.write_text(config.to_toml())
        self.process: Background | None = None
        self.previous: list[Background] = []     # earlier runs (see start())
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
        """Start tandemd (again, once the previous process has exited: kill() then start() is a
        restart with the same config file; each run gets its own log, <name>.log, <name>-2.log,
        ... and log() is the current run's)."""
        if not self.binary.exists():
            raise TandemdError(f"tandemd binary not found: {self.binary} (build it first)")
        if self.process is not None:
            if self.process.poll() is None:
                raise TandemdError(f"{self} already started")
            self.previous.append(self.process)
        if self.notify is not None:
            self.notify.close()
        self.notify = NotifySocket(self.lab.workdir / f"notify-{self.name}.sock")
        self.lab.on_close(self.notify.close)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = str(self.notify.path)
        if not self.previous:
            self.lab.add_runtime_dir(RUNTIME_ROOT / self.file_prefix)
        log_name = self.name if not self.previous else f"{self.name}-{len(self.previous) + 1}"
        self.process = self.ns.spawn([str(self.binary), "--config", str(self.config_path)],
                                     log_name=log_name, env=env)
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

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

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

    def log_mark(self) -> int:
        """The current length of the log, for log_since()."""
        return len(self.log())

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    def wait_log(self, *needles: str, since: int = 0, timeout: float = 5.0) -> str:
        """Wait until the log after `since` contains every needle; returns that part of it."""
        def ok():
            text = self.log_since(since)
            if all(n in text for n in needles):
                return text
            if not self.running():
                raise TandemdError(f"{self.name} exited ({self.process.returncode}) before "
                                   f"logging {needles!r}:\n{text}")
            return None
        try:
            return wait_until(ok, timeout=timeout, interval=0.05,
                              what=f"{self.name} to log {needles!r}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- log since mark ---\n{self.log_since(since)}") from None

    # -- configuration at run time (SIGHUP) ---------------------------------------------------
    def write_config(self, config: UnitConfig | None = None, *, text: str | None = None) -> None:
        """Rewrite the config file tandemd was started with: from `config` (which becomes
        self.config), from raw `text` (e.g. a deliberately broken file; self.config stays), or
        from self.config as it is now (after editing it in place)."""
        if text is not None:
            self.config_path.write_text(text)
            return
        if config is not None:
            self.config = config
        self.config_path.write_text(self.config.to_toml())

    def reload(self, config: UnitConfig | None = None, *, text: str | None = None,
               expect: tuple[str, ...] | list[str] | str = (), timeout: float = 5.0) -> str:
        """Rewrite the config file (see write_config), send SIGHUP and wait until tandemd has
        logged "reloading <path>" and then every line in `expect` (default: whichever of
        'reload: nothing changed' / 'reload refused' / '... -> ...' comes first). Returns the
        log written since the signal. tandemd applies a change before it logs it."""
        if isinstance(expect, str):
            expect = (expect,)
        self.write_config(config, text=text)
        mark = self.log_mark()
        self.signal(signal.SIGHUP)
        head = f"{RELOAD_LOG_LINE}{self.config_path}"
        if expect:
            return self.wait_log(head, *expect, since=mark, timeout=timeout)

        def outcome():
            text_ = self.log_since(mark)
            after = text_.split(head, 1)[1] if head in text_ else ""
            return text_ if any(m in after for m in (RELOAD_UNCHANGED, RELOAD_REFUSED, " -> ",
                                                      "takes effect at the next restart")) \
                else None
        return wait_until(outcome, timeout=timeout, interval=0.05,
                          what=f"{self.name} to finish reloading")

    def final_counters_log(self) -> str:
        """The log from the line containing 'final counters' to the end ('' if absent)."""
        lines = self.log().splitlines()
        for i, line in enumerate(lines):
            if FINAL_COUNTERS_MARK in line:
                return "\n".join(lines[i:])
        return ""

    # -- the ctl socket (tandemctl) -----------------------------------------------------------
    @property
    def ctl_socket(self) -> str:
        return self.config.ctl_socket or ""

    def ctl(self, *args: str, json_output: bool = True, check: bool = True, timeout: float = 30.0,
            user: int | None = None) -> Any:
        """Run `tandemctl --socket <this unit's> [--json] ARGS...` (as uid/gid `user` when
        given). With json_output, returns the parsed result; else the text printed. A non-zero
        exit raises CtlError when `check`; without `check` returns the CompletedProcess."""
        import json as _json
        import subprocess
        cmd = [str(tandemctl_binary()), "--socket", self.ctl_socket]
        if json_output:
            cmd.append("--json")
        cmd += list(args)
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs = {"user": user, "group": user, "extra_groups": []}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           **kwargs)
        if not check:
            return p
        if p.returncode != 0:
            raise CtlError(p.returncode, p.stderr, p.stdout)
        return _json.loads(p.stdout) if json_output else p.stdout

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

    def blocklist(self) -> list[dict]:
        """/tandem/blocklist as [{"port", "prefix", "packets", "bytes"}, ...]."""
        return parse_blocklist(self.telemetry("/tandem/blocklist"))

    def blocklist_hits(self, prefix: str, port: str | None = None) -> dict | None:
        """The /tandem/blocklist entry of prefix (on port; the first port if None), or None."""
        port = port or self.config.ports[0].name
        for e in self.blocklist():
            if e["prefix"] == prefix and e["port"] == port:
                return e
        return None

    def xdp_counters(self, port: str | None = None) -> dict:
        """The XDP steering verdicts of a port: {"steered_ipv4": n, "passed_ipv4": n, ...}."""
        return dict(self.port_counters(port).get("xdp", {}))

    def final_xdp(self) -> dict:
        """The XDP part of the final counters block (see parse_final_xdp)."""
        return parse_final_xdp(self.final_counters_log())

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


# --- tandem-decap (ebpf/decap_tool.cpp): the backends' IPv4-in-IPv4 decapsulation tool ---------

DECAP_VERDICTS = ("decapsulated", "pass_not_ipip", "pass_not_vip", "pass_malformed",
                  "drop_error")


def default_decap_binary() -> Path:
    """$TANDEM_DECAP if set, else tandem-decap in the build tree tandemd comes from
    (<build>/ebpf/tandem-decap next to <build>/controlplane/tandemd)."""
    env = os.environ.get("TANDEM_DECAP")
    if env:
        return Path(env)
    return default_binary().resolve().parent.parent / "ebpf" / "tandem-decap"


def tandem_decap(ns: Netns, *args: str, check: bool = True, binary: str | Path | None = None):
    """Run `tandem-decap ARGS...` inside ns; returns the CompletedProcess. Exit status 3 means
    no tandem_decap program is attached to the interface."""
    return ns.run([str(binary or default_decap_binary()), *args], check=check, timeout=20)


def parse_decap_status(text: str) -> dict:
    """`tandem-decap status IFACE` -> {"interface", "program", "program_id", "mode",
    "vips": [...], "decapsulated": n, "pass_not_ipip": n, ...}."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        value = value.strip()
        if key == "vips":
            out[key] = [] if value == "none" else value.split()
        elif key in DECAP_VERDICTS or key == "program_id":
            out[key] = int(value)
        else:
            out[key] = value
    missing = [k for k in ("interface", "program", "mode", "vips", *DECAP_VERDICTS) if k not in out]
    if missing:
        raise ValueError(f"tandem-decap status lacks {missing}:\n{text}")
    return out


def decap_status(ns: Netns, ifname: str, binary: str | Path | None = None) -> dict:
    return parse_decap_status(tandem_decap(ns, "status", ifname, binary=binary).stdout)


def parse_final_xdp(text: str) -> dict:
    """The XDP lines of a counters block (final counters, SIGUSR1):
        xdp north0: steered_ipv4=2 steered_arp=1 ... dropped_blocklist=0
        xdp north0 blocklist 10.0.0.0/8: 4 packets 392 bytes
    -> {"ports": {"north0": {"steered_ipv4": 2, ...}},
        "blocklist": [{"port": "north0", "prefix": "10.0.0.0/8", "packets": 4, "bytes": 392}]}"""
    out: dict[str, Any] = {"ports": {}, "blocklist": []}
    for line in text.splitlines():
        m = re.search(r"\bxdp (\w+) blocklist (\S+): (\d+) packets (\d+) bytes", line)
        if m:
            out["blocklist"].append({"port": m.group(1), "prefix": m.group(2),
                                     "packets": int(m.group(3)), "bytes": int(m.group(4))})
            continue
        m = re.search(r"\bxdp (\w+): (.*)$", line)
        if m:
            out["ports"][m.group(1)] = {k: int(v) for k, v in
                                        re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def parse_counter_lines(text: str) -> dict[str, int]:
    """Pull 'name: N' / 'name=N' pairs out of a log block (for the final-counters block)."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_.]*)\s*[:=]\s*(\d+)\b", text)}


__all__ = ["Tandemd", "TandemdError", "NotifySocket", "check_config", "default_binary",
           "repo_root", "parse_counter_lines", "parse_final_xdp", "READY_LOG_LINE",
           "FINAL_COUNTERS_MARK", "RELOAD_LOG_LINE", "RELOAD_UNCHANGED", "RELOAD_REFUSED",
           "STALE_STEERING_LOG", "DECAP_VERDICTS", "default_decap_binary", "tandem_decap",
           "parse_decap_status", "decap_status"]
