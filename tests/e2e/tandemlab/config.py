"""tandemd's TOML configuration, built from Python values.

    cfg = UnitConfig(name="tandem-a", file_prefix="tl42-ab12-a",
                     ports=[PortConfig("north0", af_xdp("veth-u"), address="10.199.1.2/24")])
    path.write_text(cfg.to_toml())

`extra` lets a test add or override any key without changing this module:
    UnitConfig(..., extra={"worker": {"burst_size": 8}, "newsection": {"k": 1}})

XDP steering (AF_XDP ports): PortConfig(..., secondary_addresses=["10.199.1.9/24"],
xdp_steering=False) and UnitConfig(..., xdp_blocklist=["10.199.1.128/25"]) -> [xdp] blocklist.

Load balancing: UnitConfig(..., services=[ServiceConfig("web", "10.199.3.10", port=80,
mode="nat", backends=[BackendConfig("10.199.2.21", port=8080, weight=2), ...])],
conntrack={"capacity": 65536}) -> [[service]], [[service.backend]] and [conntrack].

Metrics: UnitConfig(..., metrics_listen="127.0.0.1:9469") -> [metrics] listen (the Prometheus
endpoint, inside the unit's namespace).

High availability: UnitConfig(..., ha=HaConfig(priority=200, key="...", sync_listen=...,
sync_peer=..., data_port="north0", data_peer="10.199.1.3",
groups=[HaGroup(1, floating_addresses=[FloatingAddress("south0", "10.199.2.1/24")])],
track=[HaTrack(link="north0")])) -> [ha], [[ha.group]], [[ha.track]]. Health checks and groups
per service: ServiceConfig(..., group=1, on_backend_down="reset",
health_check=HealthCheck("http", interval_ms=200, http_body="ok")) -> [service.health_check].
Fields left None are not written (tandemd's default applies).

Connection-state sync: UnitConfig(..., ha=..., sync=SyncConfig(listen="10.199.9.1:8694",
peer="10.199.9.2:8694", refresh_ms=10000, key="...")) -> [sync] (an empty SyncConfig() writes
an empty [sync] table: every default).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any


def af_xdp(iface: str, index: int = 0, **kv: Any) -> str:
    """DPDK vdev string for an AF_XDP port on a kernel interface."""
    return _vdev(f"net_af_xdp{index}", iface, kv)


def af_packet(iface: str, index: int = 0, **kv: Any) -> str:
    """DPDK vdev string for an AF_PACKET port on a kernel interface."""
    return _vdev(f"net_af_packet{index}", iface, kv)


def _vdev(driver: str, iface: str, kv: dict) -> str:
    return ",".join([driver, f"iface={iface}"] + [f"{k}={v}" for k, v in kv.items()])


@dataclass
class PortConfig:
    name: str
    device: str                      # e.g. af_xdp("veth-u")
    address: str                     # CIDR, e.g. "10.199.1.2/24"
    role: str = "both"               # north | south | both
    gateway: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    secondary_addresses: list[str] = field(default_factory=list)   # more CIDRs, up to 7
    xdp_steering: bool | None = None    # None: tandemd's default (on for net_af_xdp ports)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "device": self.device, "role": self.role,
                             "address": self.address}
        if self.gateway:
            d["gateway"] = self.gateway
        if self.secondary_addresses:
            d["secondary_addresses"] = list(self.secondary_addresses)
        if self.xdp_steering is not None:
            d["xdp_steering"] = self.xdp_steering
        d.update(self.extra)
        return d


@dataclass
class BackendConfig:
    address: str                     # e.g. "10.199.2.21"
    port: int | None = None          # None: the service's port (dsr and tunnel must keep it)
    weight: int = 1                  # 0 = drained: no new flows, existing ones stay

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"address": self.address}
        if self.port is not None:
            d["port"] = self.port
        d["weight"] = self.weight
        return d


@dataclass
class HealthCheck:
    """[service.health_check]: type "none" | "tcp" | "http"; None fields are not written."""
    type: str = "tcp"
    interval_ms: int | None = 200
    timeout_ms: int | None = 100
    rise: int | None = 2
    fall: int | None = 2
    port: int | None = None          # 0 / None: the backend's port
    http_path: str | None = None
    http_host: str | None = None
    http_status: int | None = None
    http_body: str | None = None     # a string the body must contain
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type}
        for k in ("interval_ms", "timeout_ms", "rise", "fall", "port", "http_path", "http_host",
                  "http_status", "http_body"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        d.update(self.extra)
        return d


@dataclass
class ServiceConfig:
    name: str
    vip: str
    port: int = 80                   # 0 = every port
    protocol: str = "tcp"            # tcp | udp
    mode: str = "nat"                # nat | fullnat | dsr | tunnel
    backends: list[BackendConfig] = field(default_factory=list)
    local_addresses: list[str] = field(default_factory=list)   # fullnat only
    maglev_size: int | None = None   # prime; None: tandemd's default (65537)
    extra: dict[str, Any] = field(default_factory=dict)
    group: int | None = None                 # HA VIP group ([[ha.group]] id); None: default (1)
    on_backend_down: str | None = None       # "keep" | "reset"; None: tandemd's default
    health_check: HealthCheck | None = None  # [service.health_check]

    def backend(self, address: str) -> BackendConfig:
        for b in self.backends:
            if b.address == address:
                return b
        raise LookupError(f"service {self.name} has no backend {address}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "vip": self.vip, "protocol": self.protocol,
                             "port": self.port, "mode": self.mode}
        if self.maglev_size is not None:
            d["maglev_size"] = self.maglev_size
        if self.local_addresses:
            d["local_addresses"] = list(self.local_addresses)
        if self.group is not None:
            d["group"] = self.group
        if self.on_backend_down is not None:
            d["on_backend_down"] = self.on_backend_down
        if self.health_check is not None:
            d["health_check"] = self.health_check.to_dict()
        d.update(self.extra)
        if self.backends:
            d["backend"] = [b.to_dict() for b in self.backends]
        return d


@dataclass
class FloatingAddress:
    """An address that moves with an HA group: the active unit answers ARP for it on `port`."""
    port: str                        # a [[port]] name
    address: str                     # CIDR, e.g. "10.199.2.1/24"

    def to_dict(self) -> dict[str, Any]:
        return {"port": self.port, "address": self.address}


@dataclass
class HaGroup:
    """[[ha.group]]: a VIP group (1..63) with this unit's priority (None: [ha] priority)."""
    id: int = 1
    priority: int | None = None
    floating_addresses: list[FloatingAddress] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id}
        if self.priority is not None:
            d["priority"] = self.priority
        if self.floating_addresses:
            d["floating_addresses"] = [f.to_dict() for f in self.floating_addresses]
        d.update(self.extra)
        return d


@dataclass
class HaTrack:
    """[[ha.track]]: exactly one of link=PORT, gateway=PORT, service=NAME (+ min_healthy);
    weight 0: the unit cannot serve while the object fails, N: its priority drops by N."""
    link: str | None = None
    gateway: str | None = None
    service: str | None = None
    min_healthy: int | None = None
    weight: int = 0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k in ("link", "gateway", "service", "min_healthy"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        d["weight"] = self.weight
        return d


def _scalars(table: Any) -> dict[str, Any]:
    """A config table's SCALARS that are set (None: not written, tandemd's default), then its
    `extra` keys."""
    d = {k: getattr(table, k) for k in table.SCALARS if getattr(table, k) is not None}
    d.update(table.extra)
    return d


@dataclass
class HaConfig:
    """[ha] (written only when UnitConfig.ha is set). None fields are not written."""
    priority: int | None = 100
    preempt: bool | None = False
    advert_interval_ms: int | None = 10
    dead_intervals: int | None = 3
    hold_down_ms: int | None = 1000
    key: str | None = None           # the pre-shared HMAC key (16+ bytes), or key_file
    key_file: str | None = None
    sync_listen: str | None = None   # "ADDRESS:PORT" of this unit on the sync link
    sync_peer: str | None = None
    data_port: str | None = None     # the [[port]] the fast path sends adverts from
    data_peer: str | None = None     # the peer's address on that port's network
    data_udp_port: int | None = None
    garp_count: int | None = None
    garp_interval_ms: int | None = None
    groups: list[HaGroup] = field(default_factory=list)
    track: list[HaTrack] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    SCALARS = ("priority", "preempt", "advert_interval_ms", "dead_intervals", "hold_down_ms",
               "key", "key_file", "sync_listen", "sync_peer", "data_port", "data_peer",
               "data_udp_port", "garp_count", "garp_interval_ms")

    def dead_ms(self) -> int:
        return (self.advert_interval_ms or 10) * (self.dead_intervals or 3)

    def to_dict(self) -> dict[str, Any]:
        d = _scalars(self)
        if self.groups:
            d["group"] = [g.to_dict() for g in self.groups]
        if self.track:
            d["track"] = [t.to_dict() for t in self.track]
        return d


@dataclass
class SyncConfig:
    """[sync] (connection-state replication; valid only with [ha]; written only when
    UnitConfig.sync is set). None fields are not written (tandemd's default applies: enabled
    with [ha], listen/peer = [ha] sync_listen/sync_peer with the port + 1, mode "async",
    refresh_ms 10000, key = [ha] key)."""
    enabled: bool | None = None
    listen: str | None = None        # "ADDRESS:PORT" this unit receives sync messages on
    peer: str | None = None          # "ADDRESS:PORT" its messages are sent to (a relay, say)
    mode: str | None = None          # "async" or "sync"
    refresh_ms: int | None = None    # a connection that carried packets is re-sent this often
    key: str | None = None           # another HMAC key than [ha] key (16+ bytes)
    key_file: str | None = None      # or the key from a file (absolute path)
    flush_ms: int | None = None      # an open batch of changes waits at most this long
    budget: int | None = None        # UDP payload bytes per message
    hold_timeout_ms: int | None = None  # sync mode: the longest a first packet waits for the ack
    config: str | None = None        # "push" (the newer services go to the peer) or "compare"
    extra: dict[str, Any] = field(default_factory=dict)

    SCALARS = ("enabled", "listen", "peer", "mode", "refresh_ms", "key", "key_file", "flush_ms",
               "budget", "hold_timeout_ms", "config")

    def to_dict(self) -> dict[str, Any]:
        return _scalars(self)


@dataclass
class UnitConfig:
    name: str = "tandem-a"
    file_prefix: str = "tandem-a"
    id: int = 1
    ports: list[PortConfig] = field(default_factory=list)
    # [eal]
    lcores: str = "0"
    memory_mb: int = 256
    no_huge: bool = True
    extra_eal_args: list[str] = field(default_factory=list)
    # [worker]
    burst_size: int = 32
    idle_backoff: bool = True
    # [neighbour]
    neighbour_capacity: int = 1024
    reachable_ms: int = 30000
    probe_interval_ms: int = 1000
    max_probes: int = 3
    # [log]
    log_level: str = "info"
    # [xdp] (written only when set): steering program path, source prefixes dropped in XDP
    xdp_program: str | None = None
    xdp_blocklist: list[str] | None = None
    # [conntrack] (written only when set): {"capacity": n, "tcp_established_ms": ms, ...}
    conntrack: dict[str, Any] | None = None
    # [[service]] with [[service.backend]]
    services: list[ServiceConfig] = field(default_factory=list)
    # [metrics] listen (written only when set): "ADDRESS:PORT" of GET /metrics
    metrics_listen: str | None = None
    # [ctl] socket (written only when set; Tandemd sets one in the lab's workdir, so that units
    # never share the default /run/tandem/tandemd.sock). "" disables the ctl socket.
    ctl_socket: str | None = None
    # [ha] with [[ha.group]] and [[ha.track]] (written only when set)
    ha: HaConfig | None = None
    # anything else: {section: {key: value}} merged over the above
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    # [sync] (written only when set; needs [ha])
    sync: SyncConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "unit": {"id": self.id, "name": self.name},
            "eal": {"lcores": self.lcores, "memory_mb": self.memory_mb, "no_huge": self.no_huge,
                    "file_prefix": self.file_prefix, "extra_args": list(self.extra_eal_args)},
            "worker": {"burst_size": self.burst_size, "idle_backoff": self.idle_backoff},
            "neighbour": {"capacity": self.neighbour_capacity, "reachable_ms": self.reachable_ms,
                          "probe_interval_ms": self.probe_interval_ms,
                          "max_probes": self.max_probes},
            "log": {"level": self.log_level},
        }
        xdp: dict[str, Any] = {}
        if self.xdp_program is not None:
            xdp["program"] = self.xdp_program
        if self.xdp_blocklist is not None:
            xdp["blocklist"] = list(self.xdp_blocklist)
        if xdp:
            d["xdp"] = xdp
        if self.conntrack is not None:
            d["conntrack"] = dict(self.conntrack)
        if self.metrics_listen is not None:
            d["metrics"] = {"listen": self.metrics_listen}
        if self.ctl_socket is not None:
            d["ctl"] = {"socket": self.ctl_socket}
        if self.ha is not None:
            d["ha"] = self.ha.to_dict()
        if self.sync is not None:
            d["sync"] = self.sync.to_dict()
        for section, values in self.extra.items():
            if isinstance(values, dict) and isinstance(d.get(section), dict):
                d[section].update(values)
            else:
                d[section] = values
        d["port"] = [p.to_dict() for p in self.ports]
        if self.services:
            d["service"] = [s.to_dict() for s in self.services]
        return d

    def service(self, name: str) -> ServiceConfig:
        for s in self.services:
            if s.name == name:
                return s
        raise LookupError(f"no service {name!r}")

    def to_toml(self) -> str:
        return dumps_toml(self.to_dict())


# --- a small TOML writer (tables, arrays of tables, scalars, arrays of scalars) -------------

def _key(k: str) -> str:
    if k and all(c.isalnum() or c in "-_" for c in k):
        return k
    return json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError("TOML writer: nan/inf not supported")
        return repr(v)
    if isinstance(v, str):
        # a JSON string (ASCII, \" \\ \n \uXXXX escapes) is a valid TOML basic string
        return json.dumps(v, ensure_ascii=True)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"TOML writer: unsupported value {v!r}")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps_toml(doc: dict[str, Any]) -> str:
    lines: list[str] = []

    def emit_table(path: list[str], table: dict[str, Any], header: str | None) -> None:
        scalars = [(k, v) for k, v in table.items()
                   if v is not None and not isinstance(v, dict) and not _is_table_array(v)]
        subtables = [(k, v) for k, v in table.items() if isinstance(v, dict)]
        arrays = [(k, v) for k, v in table.items() if _is_table_array(v)]
        if header is not None:
            if lines:
                lines.append("")
            lines.append(header)
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in subtables:
            p = path + [k]
            emit_table(p, v, "[" + ".".join(_key(x) for x in p) + "]")
        for k, v in arrays:
            p = path + [k]
            for item in v:
                emit_table(p, item, "[[" + ".".join(_key(x) for x in p) + "]]")

    emit_table([], doc, None)
    return "\n".join(lines) + "\n"
