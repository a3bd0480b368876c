"""Client for DPDK's telemetry v2 socket (what dpdk-telemetry.py speaks).

The server listens on a SOCK_SEQPACKET unix socket /var/run/dpdk/<file_prefix>/dpdk_telemetry.v2,
sends a JSON hello on connect ({"version", "pid", "max_output_len"}), then answers each command
string ("/tandem/counters", "/ethdev/stats,0", ...) with one JSON message {"<cmd>": value}.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

RUNTIME_ROOT = Path("/var/run/dpdk")
SOCKET_NAME = "dpdk_telemetry.v2"
MIN_BUF = 1 << 20  # replies may exceed 64 KiB; a seqpacket recv truncates to the buffer size


class TelemetryError(RuntimeError):
    pass


def socket_path(file_prefix: str, runtime_root: Path | str = RUNTIME_ROOT) -> Path:
    return Path(runtime_root) / file_prefix / SOCKET_NAME


def _recv_json(sock: socket.socket, bufsize: int) -> Any:
    data, _, flags, _ = sock.recvmsg(bufsize)
    if not data:
        raise TelemetryError("telemetry socket closed by the server")
    if flags & socket.MSG_TRUNC:
        raise TelemetryError(f"telemetry reply truncated at {bufsize} bytes")
    try:
        return json.loads(data.decode())
    except json.JSONDecodeError as e:
        raise TelemetryError(f"telemetry reply is not JSON ({e}): {data[:200]!r}") from None


class TelemetryClient:
    """A connection to one DPDK process; reuse it for several commands, or use telemetry()."""

    def __init__(self, file_prefix: str | None = None, *, path: str | Path | None = None,
                 timeout: float = 5.0):
        if path is None:
            if file_prefix is None:
                raise ValueError("give file_prefix or path")
            path = socket_path(file_prefix)
        self.path = Path(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(self.path))
            self.hello = _recv_json(self.sock, MIN_BUF)
        except OSError as e:
            self.sock.close()
            raise TelemetryError(f"cannot talk to telemetry socket {self.path}: {e}") from e
        except TelemetryError:
            self.sock.close()
            raise
        self.bufsize = max(MIN_BUF, int(self.hello.get("max_output_len", 0)) + 1)

    def __enter__(self) -> "TelemetryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def raw(self, cmd: str) -> dict:
        """Send cmd and return the whole decoded reply, e.g. {"/tandem/counters": {...}}."""
        try:
            self.sock.send(cmd.encode())
            return _recv_json(self.sock, self.bufsize)
        except OSError as e:
            raise TelemetryError(f"telemetry command {cmd!r} on {self.path}: {e}") from e

    def query(self, cmd: str) -> Any:
        """Send cmd and return the value under its key (the part before any ',' parameters).
        A null value (DPDK's answer to an unknown command, or from a handler that failed,
        e.g. on a port not started yet) raises TelemetryError."""
        reply = self.raw(cmd)
        key = cmd.split(",", 1)[0]
        if not isinstance(reply, dict) or key not in reply:
            raise TelemetryError(f"unexpected reply to {cmd!r}: {reply!r}")
        value = reply[key]
        if value is None:
            raise TelemetryError(f"telemetry command {cmd!r} returned null: unknown command "
                                 f"or its handler failed (reply {reply!r})")
        return value


def telemetry(cmd: str, file_prefix: str | None = None, *, path: str | Path | None = None,
              timeout: float = 5.0) -> Any:
    """One-shot query: connect, send cmd, return the value of the reply's command key."""
    with TelemetryClient(file_prefix, path=path, timeout=timeout) as c:
        return c.query(cmd)


# --- tandemd's replies, parsed ---------------------------------------------------------------
#
# DPDK 22.11 telemetry cannot nest a container inside a container's container, so tandemd
# publishes /tandem/counters as a flat dict ("north0/rx_packets", "handled/<event>",
# "drop/<reason>", "neighbour/<event>", "worker/<counter>", "north0/xdp/<verdict>") and
# /tandem/neighbours and /tandem/blocklist as arrays of strings ("<port> <address> <mac> <state>
# <age_ms>", "<port> <prefix> <packets> <bytes>"); docs/operations.md documents them.

_SECTIONS = {"handled": "handled", "drop": "drops", "worker": "workers", "neighbour": "neighbour",
             "conntrack": "conntrack"}


def parse_counters(raw: dict, port_names: list[str]) -> dict:
    """-> {"ports": [{"name", "rx_packets", ..., "xdp": {...}}], "handled": {...},
    "drops": {...}, "workers": {...}, "neighbour": {...}}: "<head>/<counter>" keys grouped by
    head, where a head is a port when it is one of port_names, else a section. A port key with
    a group ("<port>/<group>/<counter>", e.g. "north0/xdp/steered_ipv4") goes to
    port[group][counter]; a port with XDP steering thus has port["xdp"] = {verdict: packets}."""
    out: dict[str, Any] = {"ports": [], "handled": {}, "drops": {}, "workers": {}, "neighbour": {},
                           "conntrack": {}}
    ports: dict[str, dict[str, Any]] = {name: {"name": name} for name in port_names}
    for key, value in raw.items():
        head, sep, tail = key.partition("/")
        if not sep:
            raise TelemetryError(f"unexpected counter key {key!r}")
        if head in ports:
            group, gsep, counter = tail.partition("/")
            if not gsep:
                ports[head][tail] = value
            elif not counter or "/" in counter or not isinstance(ports[head].get(group, {}), dict):
                raise TelemetryError(f"unexpected port counter key {key!r}")
            else:
                ports[head].setdefault(group, {})[counter] = value
        elif head in _SECTIONS:
            out[_SECTIONS[head]][tail] = value
        else:
            raise TelemetryError(f"counter {key!r} belongs to no port or section")
    out["ports"] = list(ports.values())
    return out


def parse_blocklist(raw: list[str]) -> list[dict]:
    """/tandem/blocklist -> [{"port", "prefix", "packets", "bytes"}, ...] (one per prefix and
    steered port; "<port> <prefix> <packets> <bytes>" on the wire)."""
    out = []
    for line in raw:
        parts = line.split()
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            raise TelemetryError(f"cannot parse blocklist entry {line!r}")
        out.append({"port": parts[0], "prefix": parts[1], "packets": int(parts[2]),
                    "bytes": int(parts[3])})
    return out


def parse_neighbours(raw: list[str]) -> list[dict]:
    """-> [{"port", "address", "mac", "state", "age_ms"}, ...]"""
    out = []
    for line in raw:
        parts = line.split()
        if len(parts) != 5:
            raise TelemetryError(f"cannot parse neighbour entry {line!r}")
        port, address, mac, state, age = parts
        out.append({"port": port, "address": address, "mac": mac.lower(), "state": state,
                    "age_ms": int(age)})
    return out
