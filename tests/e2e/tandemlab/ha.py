"""Two tandemd units in high availability (active/standby), and the readers of their status.

    t = ha_lab(lab, subnet_n="10.199.40", subnet_s="10.199.41", subnet_sync="10.199.42",
               ha_a={"priority": 200}, ha_b={"priority": 100})
    wait_roles(t, {"a": "active", "b": "standby"})
    t.a.kill(); wait_roles(t, {"b": "active"}, timeout=1.0)
    status(t.b).last_failover.detection_ms

Topology (N, S, Y = subnet_n, subnet_s, subnet_sync, "10.199.x" strings):

    [client] cli N.1/24 ─┐   VIP N.100 (in the client's subnet: it ARPs for it, the active
                         │   unit answers)
    [nsw: bridge brn] ───┼── swna ── north [unita: tandemd A  north0 N.2 (role north)
                         └── swnb ── north [unitb: tandemd B  north0 N.3 (role north)

    [unita] sync Y.1/30 ──veth── sync Y.2/30 [unitb]     the sync link: kernel addresses only,
                                                         adverts over UDP (port 8693)

    [unita] south0 S.2 (+ kernel S.12) ── swsa ─┐
    [unitb] south0 S.3 (+ kernel S.13) ── swsb ─┼─ [ssw: bridge brs]
                            [backend1] S.21 ── swb1 ─┤   default route via S.1, the floating
                            [backend2] S.22 ── swb2 ─┤   address of group 1 on south0 (nat)
                            ...                      ┘

Both units have the same services (VIP N.100; by default "web" 80 -> backends :8080 and "echo"
7000 -> :7000, group 1) and an [ha] table: sync_listen/sync_peer on the sync veth, data_port
north0 with data_peer the other unit's north address, group 1 holding the floating gateway
S.1/24 on south0. The unit kernels' own addresses on the south veths (S.12, S.13) stay the
kernel's (XDP steering), so health checks from the unit's kernel reach the backends.

Every backend runs an LbBackend server (HTTP on 80 and 8080, echo on 7000) unless servers=False,
and with check_port=P a second one (HTTP on P) for health checks. To make the units see the
world differently: block_checks(t, "a", "b2", P) (iptables in a backend: A's checks time out),
block_arp_from(t, address, "a") (ebtables on the north bridge: ARP from address never reaches
A); both return a Filter (remove(), packets()).

The status readers: everything that knows the layout of `tandemctl --json ha status` is the
HaStatus class (and Failover), and of a backend's health in `services list` backend_health();
if tandemd's JSON changes, change only those.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

from .config import (BackendConfig, FloatingAddress, HaConfig, HaGroup, HaTrack, PortConfig,
                     ServiceConfig, UnitConfig, af_packet, af_xdp)
from .config import SyncConfig
from .lab import Lab, Netns
from .proc import wait_until
from .tandemd import Tandemd
from .topology import LbBackendHost
from .traffic import LbBackend, ping

DEFAULT_KEY = "tandemlab-ha-pre-shared-key-0123456789"
SYNC_PORT = 8693
WEB, WEB_NAT, ECHO = 80, 8080, 7000
VIP_HOST = 100            # the VIP is N.100
FLOATING_HOST = 1         # the floating gateway is S.1
KERNEL_HOST = {"a": 12, "b": 13}
UNIT_HOST = {"a": 2, "b": 3}
UNIT_ID = {"a": 1, "b": 2}
DRIVERS = {"af_xdp": af_xdp, "af_packet": af_packet}


# --- the status readers: the ONE place that knows the JSON of `ha status` / `services list` ----

@dataclass
class Failover:
    """A unit's last failover as `ha status` reports it (last_failover)."""
    group: int | None
    cause: str | None
    from_role: str | None
    to_role: str | None
    detection_ms: float | None
    takeover_ms: float | None
    raw: dict


class HaStatus:
    """`tandemctl --json ha status` of one unit, read through accessors only.

    Expected layout (see the HA brief):
      {"enabled", "unit_id", "ready",
       "peer": {"unit_id", "alive", "paths": {"sync": {"alive", "alarm"}, "data": {...}}},
       "groups": [{"id", "role", "priority", "effective_priority", "advertised_priority"}],
       "tracking": [{"object", "ok"}],
       "last_failover": {"group", "cause", "from", "to", "detection_ms", "takeover_ms"} | null,
       "transitions": [{"group", "from", "to", "cause", ...}]}"""

    def __init__(self, raw: dict):
        self.raw = raw

    def __repr__(self) -> str:
        return f"HaStatus({self.raw!r})"

    # -- the unit -----------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.raw.get("enabled"))

    @property
    def unit_id(self) -> int | None:
        return self.raw.get("unit_id")

    @property
    def ready(self) -> bool:
        return bool(self.raw.get("ready"))

    # -- the peer and the two paths -----------------------------------------------------------
    @property
    def peer(self) -> dict:
        return self.raw.get("peer") or {}

    @property
    def peer_alive(self) -> bool:
        return bool(self.peer.get("alive"))

    def _path(self, path: str) -> dict:
        if path not in ("sync", "data"):
            raise ValueError(f"path must be 'sync' or 'data', not {path!r}")
        return (self.peer.get("paths") or {}).get(path) or {}

    def path_alive(self, path: str) -> bool:
        return bool(self._path(path).get("alive"))

    def alarm(self, path: str) -> bool:
        """The path's alarm: raised while it is silent and the other path still hears the peer."""
        return bool(self._path(path).get("alarm"))

    # -- groups -------------------------------------------------------------------------------
    def group(self, gid: int = 1) -> dict:
        for g in self.raw.get("groups") or []:
            if g.get("id") == gid:
                return g
        raise LookupError(f"no group {gid} in ha status {self.raw!r}")

    def role(self, gid: int = 1) -> str:
        return str(self.group(gid).get("role"))

    def maintenance(self, gid: int = 1) -> bool:
        return self.role(gid) == "maintenance" or bool(self.raw.get("maintenance"))

    def priority(self, gid: int = 1) -> int | None:
        return self.group(gid).get("priority")

    def effective_priority(self, gid: int = 1) -> int | None:
        return self.group(gid).get("effective_priority")

    def advertised_priority(self, gid: int = 1) -> int | None:
        return self.group(gid).get("advertised_priority")

    # -- tracking and history -----------------------------------------------------------------
    @property
    def tracking(self) -> list[dict]:
        return list(self.raw.get("tracking") or [])

    def tracking_ok(self, obj: str) -> bool | None:
        """ok of the tracked object whose name contains obj (e.g. "link north0"); None if none."""
        for t in self.tracking:
            if obj in str(t.get("object", "")):
                return bool(t.get("ok"))
        return None

    @property
    def last_failover(self) -> Failover | None:
        f = self.raw.get("last_failover")
        if not f:
            return None
        return Failover(group=f.get("group"), cause=f.get("cause"), from_role=f.get("from"),
                        to_role=f.get("to"), detection_ms=f.get("detection_ms"),
                        takeover_ms=f.get("takeover_ms"), raw=f)

    @property
    def transitions(self) -> list[dict]:
        """[{"group", "from", "to", "cause", ...}], oldest first."""
        return list(self.raw.get("transitions") or [])

    def causes(self, gid: int = 1) -> list[str]:
        return [str(t.get("cause")) for t in self.transitions if t.get("group", gid) == gid]


@dataclass
class BackendHealth:
    health: str             # "up" | "down" | "unknown"
    error: str              # why the last check failed ("" when none)
    raw: dict


def backend_health(unit: "Tandemd | HaUnit", service: str, address: str,
                   port: int | None = None) -> BackendHealth:
    """A backend's health as `tandemctl --json services list` reports it."""
    u = unit.unit if isinstance(unit, HaUnit) else unit
    for s in u.ctl("services", "list", timeout=10)["services"]:
        if s["name"] != service:
            continue
        for b in s.get("backends", []):
            if b.get("address") == address and (port is None or b.get("port") == port):
                return BackendHealth(health=str(b.get("health", "unknown")),
                                     error=str(b.get("health_error") or ""), raw=b)
        raise LookupError(f"service {service} has no backend {address}: {s!r}")
    raise LookupError(f"no service {service!r}")


def wait_backend_health(unit: "Tandemd | HaUnit", service: str, address: str, want: str, *,
                        timeout: float, interval: float = 0.05) -> tuple[BackendHealth, float]:
    """Poll until the backend's health is `want`; returns (its BackendHealth, seconds waited)."""
    t0 = time.monotonic()
    last: list[BackendHealth] = []

    def ok():
        h = backend_health(unit, service, address)
        last[:] = [h]
        return h if h.health == want else None
    try:
        h = wait_until(ok, timeout=timeout, interval=interval,
                       what=f"backend {address} of {service} to be {want}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last seen: {last[0].raw if last else None}") from None
    return h, time.monotonic() - t0


# --- the lab ---------------------------------------------------------------------------------

@dataclass
class HaUnit:
    """One of the two units: its namespace, tandemd and interfaces."""
    key: str                 # "a" | "b"
    ns: Netns
    unit: Tandemd
    config: UnitConfig
    north_if: str
    north_ip: str
    north_mac: str
    south_if: str
    south_ip: str
    south_mac: str
    sync_if: str
    sync_ip: str
    kernel_ip: str | None

    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def ha(self) -> HaConfig:
        assert self.config.ha is not None
        return self.config.ha

    def running(self) -> bool:
        return self.unit.running()

    def start(self, wait: bool = True, timeout: float = 30.0) -> "HaUnit":
        self.unit.start(wait=wait, timeout=timeout)
        return self

    def kill(self) -> int:
        return self.unit.kill()

    def stop(self, timeout: float = 10.0) -> int:
        return self.unit.stop(timeout=timeout)

    def ctl(self, *args: str, **kw) -> Any:
        return self.unit.ctl(*args, **kw)

    def status(self) -> HaStatus:
        return status(self)

    def role(self, group: int = 1) -> str:
        return role(self, group)

    def link(self, which: str) -> str:
        return {"north": self.north_if, "south": self.south_if, "sync": self.sync_if}[which]

    def link_down(self, which: str) -> None:
        """`ip link set down` on this unit's end of the north, south or sync veth."""
        self.unit.lab.link_down(self.ns, self.link(which))

    def link_up(self, which: str) -> None:
        self.unit.lab.link_up(self.ns, self.link(which))

    # -- connection-state sync ([sync]) ---------------------------------------------------------
    @property
    def sync_listen(self) -> str:
        """Where this unit receives sync messages: [sync] listen, else [ha] sync_listen's
        address with its port + 1 (tandemd's default)."""
        if self.config.sync is not None and self.config.sync.listen:
            return self.config.sync.listen
        return _port_plus_one(self.ha.sync_listen)

    @property
    def sync_peer(self) -> str:
        """Where this unit sends its sync messages: [sync] peer, else [ha] sync_peer + 1."""
        if self.config.sync is not None and self.config.sync.peer:
            return self.config.sync.peer
        return _port_plus_one(self.ha.sync_peer)

    def sync_status(self) -> "SyncStatus":
        return sync_status(self)


@dataclass
class HaLab:
    lab: Lab
    mode: str
    client: Netns
    north_switch: Netns
    south_switch: Netns
    client_if: str
    client_ip: str
    client_mac: str
    vip: str
    floating_ip: str
    subnet_n: str
    subnet_s: str
    subnet_sync: str
    units: dict[str, HaUnit]
    backends: list[LbBackendHost]
    services: list[ServiceConfig]
    servers: dict[str, LbBackend] = field(default_factory=dict)
    check_servers: dict[str, LbBackend] = field(default_factory=dict)   # ha_lab(check_port=)

    @property
    def a(self) -> HaUnit:
        return self.units["a"]

    @property
    def b(self) -> HaUnit:
        return self.units["b"]

    def unit(self, key: str) -> HaUnit:
        return self.units[key]

    def other(self, key: str) -> HaUnit:
        return self.units["b" if key == "a" else "a"]

    def key_of_mac(self, mac: str | None) -> str | None:
        """Which unit's north port has this MAC ("a", "b"), or None."""
        for k, u in self.units.items():
            if mac and u.north_mac == mac.lower():
                return k
        return None

    def backend(self, name: str) -> LbBackendHost:
        return next(b for b in self.backends if b.name == name)

    def backend_by_ip(self, ip: str) -> LbBackendHost:
        return next(b for b in self.backends if b.ip == ip)


def default_services(vip: str, subnet_s: str, n_backends: int, mode: str = "nat",
                     group: int = 1, **svc_kw) -> list[ServiceConfig]:
    """web (VIP:80 -> backends :8080) and echo (VIP:7000 -> :7000), in `group`."""
    hosts = [f"{subnet_s}.{20 + i}" for i in range(1, n_backends + 1)]
    return [
        ServiceConfig("web", vip, port=WEB, mode=mode, group=group,
                      backends=[BackendConfig(h, port=WEB_NAT) for h in hosts], **svc_kw),
        ServiceConfig("echo", vip, port=ECHO, mode=mode, group=group, maglev_size=251,
                      backends=[BackendConfig(h) for h in hosts], **svc_kw),
    ]


def _ha_fields(overrides: dict | None) -> dict:
    names = {f.name for f in fields(HaConfig)}
    out = dict(overrides or {})
    bad = [k for k in out if k not in names]
    if bad:
        raise ValueError(f"not HaConfig fields: {bad}")
    return out


def ha_lab(lab: Lab, mode: str = "nat", *, subnet_n: str, subnet_s: str, subnet_sync: str,
           n_backends: int = 3, services: Iterable[ServiceConfig] | None = None,
           ha: dict | None = None, ha_a: dict | None = None, ha_b: dict | None = None,
           track: Iterable[HaTrack] = (), groups: list[HaGroup] | None = None,
           start: bool = True, concurrent: bool = False,
           initial_roles: dict[str, str] | None = None, warm: bool = True,
           servers: bool = True, server_lifetime: float = 600.0, kernel_hosts: bool = True,
           driver: str = "af_xdp", ready_timeout: float = 30.0, role_timeout: float = 10.0,
           unit_kw: dict | None = None, unit_kw_a: dict | None = None,
           unit_kw_b: dict | None = None, settle: bool = True, check_port: int | None = None,
           north_gateway: str | None = None,
           sync: "dict | SyncConfig | bool | None" = None,
           sync_a: "dict | SyncConfig | bool | None" = None,
           sync_b: "dict | SyncConfig | bool | None" = None) -> HaLab:
    """Build the two-unit lab drawn in the module docstring; unless start=False, start A, wait
    until it is active, start B and wait until it is standby (concurrent=True: start both at
    once and wait until exactly one is active; initial_roles: the roles to wait for instead of
    {"a": "active", "b": "standby"}; {} waits for nothing), and (settle) until both hear each
    other on both paths with no alarm. Then (warm) the client pings both
    north addresses and every backend both south addresses, so both units know their MACs.

    services: ServiceConfig objects for both units (default: default_services()).
    ha: HaConfig field overrides for both units; ha_a / ha_b for one (e.g. {"priority": 200,
    "preempt": True}). track: [[ha.track]] entries for both units. groups: [[ha.group]]
    entries (default: group 1 with the floating gateway S.1/24 on south0).
    unit_kw (both), unit_kw_a / unit_kw_b: more UnitConfig keywords (e.g. log_level="debug").
    sync (both), sync_a / sync_b (one unit, over sync): the [sync] table as SyncConfig field
    overrides ({"key": "...", "peer": "Y.1:9694"}), a SyncConfig, or True (an empty [sync]:
    every default); all None: no [sync] table (tandemd's default applies).
    check_port: every backend also runs a separate HTTP server on this port (t.check_servers,
    started before the units), for health checks that can fail while the service's own
    connections go on (stop it, or block_checks()). north_gateway: the north ports' `gateway`
    (e.g. the client's address N.1, for [[ha.track]] gateway = "north0").
    Only mode "nat" is built (the backends route back through the floating gateway)."""
    # [sync] tables per unit, taken now: the names sync_a/sync_b are the sync veth's below.
    sync_tables = {"a": _sync_config(sync, sync_a), "b": _sync_config(sync, sync_b)}
    if mode != "nat":
        raise ValueError("ha_lab builds mode 'nat' only")
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {sorted(DRIVERS)}")
    dev = DRIVERS[driver]
    vip = f"{subnet_n}.{VIP_HOST}"
    floating_ip = f"{subnet_s}.{FLOATING_HOST}"
    services = list(services) if services is not None else \
        default_services(vip, subnet_s, n_backends, mode)

    client = lab.netns("client")
    nsw = lab.netns("nsw")
    ssw = lab.netns("ssw")
    unit_ns = {"a": lab.netns("unita"), "b": lab.netns("unitb")}
    north_br = lab.bridge(nsw, lab.ifname("brn"))
    south_br = lab.bridge(ssw, lab.ifname("brs"))

    client_if, swc = lab.veth(client, nsw, lab.ifname("cli"), lab.ifname("swc"))
    lab.attach(nsw, swc, north_br)
    client_ip = f"{subnet_n}.1"
    lab.addr(client, client_if, f"{client_ip}/24")

    links: dict[str, dict[str, str]] = {}
    for key, ns in unit_ns.items():
        n_if, n_sw = lab.veth(ns, nsw, lab.ifname("north"), lab.ifname(f"swn{key}"))
        lab.attach(nsw, n_sw, north_br)
        s_if, s_sw = lab.veth(ns, ssw, lab.ifname("south"), lab.ifname(f"sws{key}"))
        lab.attach(ssw, s_sw, south_br)
        links[key] = {"north": n_if, "south": s_if}
        if kernel_hosts:
            lab.addr(ns, s_if, f"{subnet_s}.{KERNEL_HOST[key]}/24")
    sync_a, sync_b = lab.veth(unit_ns["a"], unit_ns["b"], lab.ifname("synca"),
                              lab.ifname("syncb"))
    links["a"]["sync"], links["b"]["sync"] = sync_a, sync_b
    sync_ip = {"a": f"{subnet_sync}.1", "b": f"{subnet_sync}.2"}
    for key in ("a", "b"):
        lab.addr(unit_ns[key], links[key]["sync"], f"{sync_ip[key]}/30")

    backends: list[LbBackendHost] = []
    for i in range(1, n_backends + 1):
        ns = lab.netns(f"backend{i}")
        b_if, sw_if = lab.veth(ns, ssw, lab.ifname("be"), lab.ifname(f"swb{i}"))
        lab.attach(ssw, sw_if, south_br)
        ip = f"{subnet_s}.{20 + i}"
        lab.addr(ns, b_if, f"{ip}/24")
        ns.ip("route", "add", "default", "via", floating_ip)
        backends.append(LbBackendHost(name=f"b{i}", ns=ns, ifname=b_if, ip=ip, mac=ns.mac(b_if)))

    groups = groups if groups is not None else \
        [HaGroup(1, floating_addresses=[FloatingAddress("south0", f"{floating_ip}/24")])]
    cpus = os.cpu_count() or 1
    units: dict[str, HaUnit] = {}
    for key in ("a", "b"):
        peer = "b" if key == "a" else "a"
        name = f"tandem-{key}"
        hkw = dict(key=DEFAULT_KEY,
                   sync_listen=f"{sync_ip[key]}:{SYNC_PORT}",
                   sync_peer=f"{sync_ip[peer]}:{SYNC_PORT}",
                   data_port="north0", data_peer=f"{subnet_n}.{UNIT_HOST[peer]}",
                   groups=list(groups), track=list(track))
        hkw.update(_ha_fields(ha))
        hkw.update(_ha_fields(ha_a if key == "a" else ha_b))
        ports = [PortConfig("north0", dev(links[key]["north"]),
                            f"{subnet_n}.{UNIT_HOST[key]}/24", role="north",
                            gateway=north_gateway),
                 PortConfig("south0", dev(links[key]["south"], index=1),
                            f"{subnet_s}.{UNIT_HOST[key]}/24", role="south")]
        ukw: dict[str, Any] = {"lcores": "0" if key == "a" or cpus < 2 else "1"}
        ukw.update(unit_kw or {})
        ukw.update((unit_kw_a if key == "a" else unit_kw_b) or {})
        cfg = UnitConfig(name=name, id=UNIT_ID[key], file_prefix=f"{lab.id}-{name}",
                         ports=ports, services=services, ha=HaConfig(**hkw), **ukw)
        if sync_tables[key] is not None:
            cfg.sync = sync_tables[key]
        ns = unit_ns[key]
        units[key] = HaUnit(
            key=key, ns=ns, unit=Tandemd(lab, ns, cfg), config=cfg,
            north_if=links[key]["north"], north_ip=f"{subnet_n}.{UNIT_HOST[key]}",
            north_mac=ns.mac(links[key]["north"]),
            south_if=links[key]["south"], south_ip=f"{subnet_s}.{UNIT_HOST[key]}",
            south_mac=ns.mac(links[key]["south"]),
            sync_if=links[key]["sync"], sync_ip=sync_ip[key],
            kernel_ip=f"{subnet_s}.{KERNEL_HOST[key]}" if kernel_hosts else None)

    t = HaLab(lab=lab, mode=mode, client=client, north_switch=nsw, south_switch=ssw,
              client_if=client_if, client_ip=client_ip, client_mac=client.mac(client_if),
              vip=vip, floating_ip=floating_ip, subnet_n=subnet_n, subnet_s=subnet_s,
              subnet_sync=subnet_sync, units=units, backends=backends, services=services)
    if servers:
        t.servers = {h.name: LbBackend(h.ns, h.name, http=[WEB, WEB_NAT], echo=[ECHO],
                                       lifetime=server_lifetime, log_name=f"server-{h.name}")
                     for h in backends}
    if check_port is not None:
        t.check_servers = {h.name: LbBackend(h.ns, h.name, http=[check_port],
                                             lifetime=server_lifetime,
                                             log_name=f"check-{h.name}")
                           for h in backends}
    if start:
        start_units(t, concurrent=concurrent, initial_roles=initial_roles,
                    ready_timeout=ready_timeout, role_timeout=role_timeout, settle=False)
        if warm:
            warm_neighbours(t)
        if settle:
            wait_paths(t, timeout=role_timeout)
    return t


def start_units(t: HaLab, *, concurrent: bool = False, initial_roles: dict[str, str] | None = None,
                ready_timeout: float = 30.0, role_timeout: float = 10.0,
                settle: bool = True) -> None:
    """Start both units: A, wait until it is active (role_timeout), then B and wait until it is
    standby; or (concurrent) both at once, then wait for initial_roles if given, else until
    exactly one is active. settle: then wait until both hear each other on both paths."""
    if concurrent:
        for u in t.units.values():
            u.start(wait=False)
        for u in t.units.values():
            u.unit.wait_ready(ready_timeout)
        if initial_roles:
            wait_roles(t, initial_roles, timeout=role_timeout)
        elif initial_roles is None:
            wait_until(lambda: len(actives(t)) == 1, timeout=role_timeout, interval=0.05,
                       what="exactly one active unit")
    else:
        want = initial_roles if initial_roles is not None else {"a": "active", "b": "standby"}
        t.a.start(timeout=ready_timeout)
        if "a" in want:
            wait_roles(t, {"a": want["a"]}, timeout=role_timeout)
        t.b.start(timeout=ready_timeout)
        if want:
            wait_roles(t, want, timeout=role_timeout)
    if settle:
        wait_paths(t, timeout=role_timeout)


def wait_paths(t: HaLab, timeout: float = 10.0) -> dict[str, HaStatus]:
    """Wait until every running unit hears its peer on both paths with no alarm raised (the
    data path needs the peer's MAC first, so it comes up a little after the sync path)."""
    def ok():
        st = {k: status(u) for k, u in t.units.items() if u.running()}
        return st if all(s.peer_alive and s.path_alive("sync") and s.path_alive("data")
                         and not s.alarm("sync") and not s.alarm("data")
                         for s in st.values()) else None
    return wait_until(ok, timeout=timeout, interval=0.05,
                      what="both units to hear each other on both paths, no alarm")


def warm_neighbours(t: HaLab) -> None:
    """The client pings both north addresses and every backend both south addresses: both
    units learn their MACs from the ARP requests (no first packet dropped as unresolved)."""
    pairs = [(t.client, u.north_ip) for u in t.units.values() if u.running()]
    pairs += [(b.ns, u.south_ip) for b in t.backends for u in t.units.values() if u.running()]
    for ns, address in pairs:
        r = ping(ns, address, count=1, interval=0.2, wait=2)
        if r.received != 1:
            raise RuntimeError(f"{ns.name} cannot ping {address}:\n{r.output}")


# --- filters: make one unit see the world differently from the other -------------------------

class Filter:
    """A netfilter rule added in a lab namespace (iptables or ebtables, both nf_tables here);
    remove() deletes it (idempotent; the namespace's deletion removes it anyway), packets() is
    how many packets it has matched."""

    def __init__(self, ns: Netns, tool: str, chain: str, spec: list[str]):
        self.ns, self.tool, self.chain, self.spec = ns, tool, chain, list(spec)
        self.active = False
        ns.run([tool, *self._wait(), "-A", chain, *self.spec], timeout=10)
        self.active = True

    def _wait(self) -> list[str]:
        return ["-w"] if self.tool == "iptables" else []

    def __repr__(self) -> str:
        return f"Filter({self.ns.name}: {self.tool} -A {self.chain} {' '.join(self.spec)})"

    def remove(self) -> None:
        if self.active:
            self.ns.run([self.tool, *self._wait(), "-D", self.chain, *self.spec], timeout=10)
            self.active = False

    def packets(self) -> int:
        """Packets matched by the rule (the chain's only rule with a DROP target)."""
        import re
        if self.tool == "iptables":
            out = self.ns.run(["iptables", "-w", "-L", self.chain, "-n", "-v", "-x"],
                              timeout=10).stdout
            counts = [int(line.split()[0]) for line in out.splitlines()[2:]
                      if len(line.split()) > 2 and line.split()[2] == "DROP"]
        else:
            out = self.ns.run(["ebtables", "-L", self.chain, "--Lc"], timeout=10).stdout
            counts = [int(m.group(1)) for m in re.finditer(r"-j DROP\s*,\s*pcnt = (\d+)", out)]
        if len(counts) != 1:
            raise RuntimeError(f"{self!r}: expected one DROP rule, found {counts}:\n{out}")
        return counts[0]


def block_checks(t: "HaLab", unit_key: str, backend: str, port: int) -> Filter:
    """In backend `backend` (e.g. "b2"), drop TCP to `port` from unit `unit_key`'s kernel
    address (where its health checks come from): only that unit's checks of that backend fail
    (by timeout); the other unit's, and traffic through either unit, are untouched."""
    u = t.unit(unit_key)
    if u.kernel_ip is None:
        raise ValueError("ha_lab(kernel_hosts=False): the units run no health checks")
    return Filter(t.backend(backend).ns, "iptables", "INPUT",
                  ["-s", u.kernel_ip, "-p", "tcp", "--dport", str(port), "-j", "DROP"])


def block_arp_from(t: "HaLab", address: str, unit_key: str) -> Filter:
    """On the north bridge, drop every ARP frame whose sender is `address` (e.g. the client,
    the north gateway) on its way to unit `unit_key`'s north port: that unit's ARP probes for
    it go unanswered and nothing it hears from it refreshes its entry; the other unit and all
    IP traffic are untouched (ebtables, nf_tables bridge family)."""
    sw_port = {"a": "swna", "b": "swnb"}[unit_key]
    return Filter(t.north_switch, "ebtables", "FORWARD",
                  ["-p", "ARP", "--arp-ip-src", address, "-o", t.lab.ifname(sw_port),
                   "-j", "DROP"])


# --- watching ARP on a link ------------------------------------------------------------------

_ARP_WATCH = r"""
import json, socket, sys, time
ifname, lifetime = sys.argv[1], float(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((ifname, 0))
s.settimeout(0.2)
print(json.dumps({"ready": ifname}), flush=True)
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    try:
        f = s.recv(2048)
    except socket.timeout:
        continue
    if len(f) < 42 or f[12:14] != b"\x08\x06":
        continue
    a = f[14:]
    print(json.dumps({"t": time.monotonic(), "src_mac": f[6:12].hex(":"),
                      "dst_mac": f[0:6].hex(":"), "op": int.from_bytes(a[6:8], "big"),
                      "sender_mac": a[8:14].hex(":"), "sender_ip": socket.inet_ntoa(a[14:18]),
                      "target_ip": socket.inet_ntoa(a[24:28])}), flush=True)
"""


class ArpWatch:
    """Records every ARP frame seen on an interface of a namespace (AF_PACKET, this interpreter,
    in the background, at most `lifetime` s): frames() -> [{"t" (time.monotonic() of this
    host), "src_mac", "dst_mac", "op" (1 request, 2 reply), "sender_mac", "sender_ip",
    "target_ip"}]."""

    def __init__(self, ns: Netns, ifname: str, *, lifetime: float = 60.0,
                 log_name: str = "arpwatch"):
        self.process = ns.spawn_python(_ARP_WATCH, ifname, str(lifetime), log_name=log_name)
        self.process.wait_output('{"ready"', timeout=10)

    def frames(self) -> list[dict]:
        import json
        return [json.loads(line) for line in self.process.log().splitlines()
                if line.startswith('{"t"')]

    def gratuitous(self, address: str, since: float = 0.0) -> list[dict]:
        """Gratuitous ARPs (sender IP = target IP = address) seen after `since`."""
        return [f for f in self.frames() if f["t"] >= since and f["sender_ip"] == address
                and f["target_ip"] == address]

    def stop(self) -> None:
        self.process.stop()


# --- reading roles -----------------------------------------------------------------------------

def _unit(u: "HaUnit | Tandemd") -> Tandemd:
    return u.unit if isinstance(u, HaUnit) else u


def status(u: "HaUnit | Tandemd", timeout: float = 5.0) -> HaStatus:
    """`tandemctl --json ha status` of a unit."""
    return HaStatus(_unit(u).ctl("ha", "status", timeout=timeout))


def role(u: "HaUnit | Tandemd", group: int = 1) -> str:
    return status(u).role(group)


def roles(t: HaLab, group: int = 1) -> dict[str, str | None]:
    """{"a": role, "b": role}; None for a unit not running or not answering."""
    out: dict[str, str | None] = {}
    for k, u in t.units.items():
        if not u.running():
            out[k] = None
            continue
        try:
            out[k] = role(u, group)
        except Exception:  # noqa: BLE001 - CtlError, a ctl timeout, a half-written answer
            out[k] = None
    return out


def wait_roles(t: HaLab, want: dict[str, str], timeout: float = 5.0, group: int = 1,
               interval: float = 0.02) -> dict[str, HaStatus]:
    """Poll until every unit named in want ({"a": "active", "b": "standby"}) has that role in
    group; returns their HaStatus. TimeoutError (with the last roles seen) otherwise."""
    last: dict[str, Any] = {}

    def ok():
        got = {}
        for k, r in want.items():
            s = status(t.units[k])
            got[k] = s
            last[k] = s.role(group)
        return got if all(got[k].role(group) == r for k, r in want.items()) else None
    try:
        return wait_until(ok, timeout=timeout, interval=interval,
                          what=f"roles {want} in group {group}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last roles seen: {last}") from None


def actives(t: HaLab, group: int = 1) -> list[str]:
    """The keys of the running units that say they are active for group."""
    return [k for k, r in roles(t, group).items() if r == "active"]


def active_unit(t: HaLab, group: int = 1) -> str | None:
    """The key ("a"/"b") of the one active unit, None if none; AssertionError if both are."""
    a = actives(t, group)
    assert len(a) <= 1, f"two active units: {roles(t, group)}"
    return a[0] if a else None


def watch_roles(t: HaLab, seconds: float, interval: float = 0.05,
                group: int = 1) -> list[tuple[float, dict[str, str | None]]]:
    """Sample roles(t) for `seconds`: [(t since start, {"a": role, "b": role}), ...]."""
    out = []
    t0 = time.monotonic()
    for _ in range(int(seconds / max(interval, 0.01)) * 4 + 4):   # bounded in count too
        now = time.monotonic() - t0
        if now >= seconds:
            break
        out.append((round(now, 3), roles(t, group)))
        time.sleep(interval)
    return out


def client_neighbour_mac(t: HaLab, address: str | None = None) -> str | None:
    """The MAC of address (default: the VIP) in the client's neighbour table, or None."""
    n = t.client.neighbour(address or t.vip, t.client_if)
    mac = (n or {}).get("lladdr")
    return mac.lower() if mac else None


__all__ = ["ArpWatch", "BackendHealth", "Failover", "Filter", "block_arp_from", "block_checks",
           "HaLab", "HaStatus", "HaUnit", "active_unit", "actives",
           "backend_health", "client_neighbour_mac", "default_services", "ha_lab", "role",
           "roles", "start_units", "status", "wait_paths", "wait_backend_health", "wait_roles",
           "warm_neighbours", "watch_roles", "DEFAULT_KEY", "SYNC_PORT", "WEB", "WEB_NAT", "ECHO"]


# --- connection-state sync ([sync], issue 8) ---------------------------------------------------
#
#     t = ha_lab(lab, sync={"refresh_ms": 2000}, sync_b={"key": "another-key-..."}, **nets)
#     sync_status(t.b).ready, .send("records"), .apply("created"), .error("bad_auth")
#     rows_a, rows_b, took = wait_tables_match(t, "a", "b", "--service", "echo", timeout=2)
#
# Relays on the sync link (tandemlab.udp_relay): point each unit's [sync] peer at RELAY_PORT on
# its own sync address (sync_peer_via_relay()), start the lab, then sync_relays(t, delay_ms=5,
# ...) starts one relay per direction, in the sender's namespace, forwarding to the other
# unit's listen address. Loss in the kernel: sync_loss(t, "a", 0.05) (iptables statistic).

SYNC_DATA_PORT = SYNC_PORT + 1       # tandemd's default [sync] port: [ha]'s + 1
RELAY_PORT = 9694                    # where sync_relays() listen, on each unit's sync address


def _port_plus_one(endpoint: str | None) -> str:
    if not endpoint:
        raise ValueError("no [ha] sync address to derive the [sync] one from")
    host, _, port = endpoint.rpartition(":")
    return f"{host}:{int(port) + 1}"


def _sync_config(common: "dict | SyncConfig | bool | None",
                 own: "dict | SyncConfig | bool | None") -> SyncConfig | None:
    """SyncConfig from ha_lab's sync (both units) and sync_a/sync_b (one unit, over it)."""
    if common is None and own is None:
        return None
    names = {f.name for f in fields(SyncConfig)}
    out = SyncConfig()
    for part in (common, own):
        if part is None or part is True:
            continue
        if part is False:
            raise ValueError("sync=False: write {'enabled': False} for enabled = false")
        if isinstance(part, SyncConfig):
            part = {k: getattr(part, k) for k in names if getattr(part, k) not in (None, {})}
        bad = [k for k in part if k not in names]
        if bad:
            raise ValueError(f"not SyncConfig fields: {bad}")
        for k, v in part.items():
            setattr(out, k, dict(v) if k == "extra" else v)
    return out


def sync_peer_via_relay(subnet_sync: str) -> dict[str, dict]:
    """{"sync_a": {...}, "sync_b": {...}} for ha_lab: each unit sends its sync messages to
    RELAY_PORT on its own sync address, where sync_relays() listens."""
    return {"sync_a": {"peer": f"{subnet_sync}.1:{RELAY_PORT}"},
            "sync_b": {"peer": f"{subnet_sync}.2:{RELAY_PORT}"}}


class SyncStatus:
    """`tandemctl --json sync status` of one unit, read through accessors only (the one place
    that knows its layout; if tandemd's JSON changes, change only this class).

    Expected layout (see the sync brief):
      {"enabled", "mode", "listen", "peer_address", "ready", "epoch",
       "peer": {"unit_id", "epoch", "heard"},
       "send": {"sequence", "acked", "in_flight", "messages", "records", "retransmits",
                "fast_retransmits", "acks", "gave_up", "backpressure", "ring_dropped"},
       "receive": {"messages", "delivered", "out_of_order", "duplicates", "beyond_window",
                   "skipped"},
       "lag": {"entries", "ms"},
       "apply": {"created", "refreshed", "deleted", "absent", "conflict", "table_full",
                 "bad_record"},
       "resync": {"state", "id", "requests_sent", "received_entries", "completed", "served",
                  "served_entries"},
       "auth_failures", "errors": {reason: n}, "alarm"}"""

    SEND = ("sequence", "acked", "in_flight", "messages", "records", "retransmits",
            "fast_retransmits", "acks", "gave_up", "backpressure", "ring_dropped")
    RECEIVE = ("messages", "delivered", "out_of_order", "duplicates", "beyond_window", "skipped")
    APPLY = ("created", "refreshed", "deleted", "absent", "conflict", "table_full", "bad_record")
    RESYNC = ("id", "requests_sent", "received_entries", "completed", "served", "served_entries")
    ERRORS = ("too_short", "bad_magic", "bad_version", "bad_length", "bad_auth", "bad_field",
              "own_unit", "stale_epoch", "replayed")

    def __init__(self, raw: dict):
        self.raw = raw

    def __repr__(self) -> str:
        return f"SyncStatus({self.raw!r})"

    @staticmethod
    def _int(section: dict, name: str, allowed: tuple[str, ...], where: str) -> int:
        if name not in allowed:
            raise ValueError(f"{where}: no counter {name!r} (one of {allowed})")
        v = section.get(name)
        return int(v) if v is not None else 0

    # -- the unit -----------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return bool(self.raw.get("enabled"))

    @property
    def mode(self) -> str | None:
        return self.raw.get("mode")

    @property
    def listen(self) -> str | None:
        return self.raw.get("listen")

    @property
    def peer_address(self) -> str | None:
        return self.raw.get("peer_address")

    @property
    def ready(self) -> bool:
        """This unit holds the peer's table: its bulk resync completed."""
        return bool(self.raw.get("ready"))

    @property
    def epoch(self) -> int | None:
        return self.raw.get("epoch")

    @property
    def alarm(self) -> bool:
        return bool(self.raw.get("alarm"))

    # -- the peer -----------------------------------------------------------------------------
    @property
    def peer(self) -> dict:
        return self.raw.get("peer") or {}

    @property
    def peer_heard(self) -> bool:
        return bool(self.peer.get("heard"))

    @property
    def peer_unit_id(self) -> int | None:
        return self.peer.get("unit_id")

    @property
    def peer_epoch(self) -> int | None:
        return self.peer.get("epoch")

    # -- counters -----------------------------------------------------------------------------
    def send(self, name: str) -> int:
        return self._int(self.raw.get("send") or {}, name, self.SEND, "send")

    def receive(self, name: str) -> int:
        return self._int(self.raw.get("receive") or {}, name, self.RECEIVE, "receive")

    def apply(self, name: str) -> int:
        return self._int(self.raw.get("apply") or {}, name, self.APPLY, "apply")

    def resync(self, name: str) -> int:
        return self._int(self.raw.get("resync") or {}, name, self.RESYNC, "resync")

    @property
    def hold(self) -> dict:
        """Sync mode's hold queue: holding, timeout_ms, held, released_acked, released_timeout,
        not_held, average_us."""
        return dict(self.raw.get("hold") or {})

    @property
    def resync_state(self) -> str | None:
        return (self.raw.get("resync") or {}).get("state")

    def error(self, reason: str) -> int:
        return self._int(self.raw.get("errors") or {}, reason, self.ERRORS, "errors")

    @property
    def errors(self) -> dict[str, int]:
        return {k: int(v) for k, v in (self.raw.get("errors") or {}).items()}

    @property
    def auth_failures(self) -> int:
        return int(self.raw.get("auth_failures") or 0)

    @property
    def lag_entries(self) -> int:
        return int((self.raw.get("lag") or {}).get("entries") or 0)

    @property
    def lag_ms(self) -> int:
        return int((self.raw.get("lag") or {}).get("ms") or 0)

    @property
    def config_match(self) -> bool | None:
        """Whether the peer's services digest equals this unit's (config.match: None until the
        peer's digest arrived). Beyond the brief's layout: tandemd reports it since 8412f14."""
        m = (self.raw.get("config") or {}).get("match")
        return None if m is None else bool(m)

    @property
    def config_relation(self) -> str | None:
        """This unit's services against the peer's: "same", "newer", "older", "conflict", or
        None before the peer's version arrived (config.relation)."""
        return (self.raw.get("config") or {}).get("relation")

    def config_pushes(self, name: str) -> int:
        """Config pushes: sent, received, applied, refused, errors (config.pushes)."""
        allowed = ("sent", "received", "applied", "refused", "errors")
        return self._int((self.raw.get("config") or {}).get("pushes") or {}, name, allowed,
                         "config.pushes")

    @property
    def retransmits(self) -> int:
        """Every retransmission, by timeout or fast."""
        return self.send("retransmits") + self.send("fast_retransmits")

    def brief(self) -> dict:
        """The figures a test prints: ready, lag, the send/receive/apply/resync counters and
        the non-zero errors."""
        return {"ready": self.ready, "alarm": self.alarm, "lag": self.raw.get("lag"),
                "send": self.raw.get("send"), "receive": self.raw.get("receive"),
                "apply": self.raw.get("apply"), "resync": self.raw.get("resync"),
                "errors": {k: v for k, v in self.errors.items() if v}}


def add_backend_to_pair(t: HaLab, service: str, address: str, port: int | None = None, *,
                        timeout: float = 3.0) -> float | None:
    """Adds a backend to `service` the way an operator of the pair does: with tandemctl on A.
    When A's state sync pushes its services (config sync, the default), B gets it from A: waits
    until B lists it and returns how long that took (s). Otherwise (sync off, or [sync] config =
    "compare") adds it on B too and returns None."""
    args = ["backend", "add", "--service", service, "--address", address]
    if port is not None:
        args += ["--port", str(port)]
    st = sync_status(t.a)
    pushes = st.enabled and (st.raw.get("config") or {}).get("mode") == "push"
    t0 = time.monotonic()
    t.a.ctl(*args)
    if not pushes:
        t.b.ctl(*args)
        return None
    key = f"{address}:{port}" if port is not None else f"{address}:"

    def on_b():
        rows = t.b.ctl("backends", "--service", service)["backends"]
        return any(r["backend"] == key or (port is None and r["backend"].startswith(key))
                   for r in rows)
    wait_until(on_b, timeout=timeout, interval=0.01, what=f"{address} pushed to B's {service}")
    return time.monotonic() - t0


def sync_status(u: "HaUnit | Tandemd", timeout: float = 5.0) -> SyncStatus:
    """`tandemctl --json sync status` of a unit."""
    return SyncStatus(_unit(u).ctl("sync", "status", timeout=timeout))


def wait_sync(u: "HaUnit | Tandemd", pred, what: str, timeout: float,
              interval: float = 0.02) -> SyncStatus:
    """Poll sync status until pred(SyncStatus) holds; TimeoutError with the last one seen."""
    last: list[SyncStatus] = []

    def ok():
        s = sync_status(u)
        last[:] = [s]
        return s if pred(s) else None
    try:
        return wait_until(ok, timeout=timeout, interval=interval,
                          what=f"{_unit(u).name}: sync {what}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last sync status: {last[0].raw if last else None}") from None


def sync_relays(t: HaLab, *, seed: int = 1, lifetime: float = 120.0,
                **relay_kw) -> dict[str, Any]:
    """For each unit whose sync peer is not the other unit's listen address (ha_lab with
    **sync_peer_via_relay()), a UdpRelay in that unit's namespace listening on that peer
    address and forwarding to the other unit's listen address: {"a": relay A->B, "b": B->A}.
    relay_kw: delay_ms, jitter_ms, duplicate, loss (tandemlab.udp_relay.UdpRelay)."""
    from .udp_relay import UdpRelay
    out: dict[str, Any] = {}
    for i, (k, u) in enumerate(sorted(t.units.items())):
        other = t.other(k)
        if u.sync_peer == other.sync_listen:
            continue
        out[k] = UdpRelay(u.ns, u.sync_peer, other.sync_listen, seed=seed + i,
                          lifetime=lifetime, log_name=f"relay-{k}{other.key}", **relay_kw)
    if not out:
        raise ValueError("no unit sends its sync messages elsewhere than its peer: build the "
                         "lab with **sync_peer_via_relay(subnet_sync)")
    return out


def sync_loss(t: HaLab, key: str, probability: float) -> list[Filter]:
    """In unit `key`'s namespace, drop UDP sync messages at random with `probability` in both
    directions (iptables -m statistic --mode random): OUTPUT to the peer's listen port, INPUT to
    this unit's listen port. Returns the two Filters (OUTPUT, INPUT)."""
    u = t.unit(key)
    out_port = u.sync_peer.rpartition(":")[2]
    in_port = u.sync_listen.rpartition(":")[2]
    stat = ["-m", "statistic", "--mode", "random", "--probability", f"{probability:.4f}"]
    return [Filter(u.ns, "iptables", "OUTPUT",
                   ["-p", "udp", "--dport", out_port, *stat, "-j", "DROP"]),
            Filter(u.ns, "iptables", "INPUT",
                   ["-p", "udp", "--dport", in_port, *stat, "-j", "DROP"])]


# --- connection tables, compared --------------------------------------------------------------

FLOW_FIELDS = ("protocol", "client", "vip", "backend", "mode", "state", "local")


def connections(u: "HaUnit | Tandemd", *filters: str, limit: int = 100000) -> list[dict]:
    """`tandemctl --json connections list --limit N FILTERS...` rows (every match up to N)."""
    out = _unit(u).ctl("connections", "list", "--limit", str(limit), *filters, timeout=10)
    if out.get("truncated"):
        raise AssertionError(f"connections list truncated at {limit}: {out.get('count')}")
    return list(out["connections"])


def conn_count(u: "HaUnit | Tandemd", *filters: str) -> int:
    return int(_unit(u).ctl("connections", "count", *filters, timeout=10)["count"])


def flow_view(row: dict, state: bool = True) -> dict:
    """What a replicated entry must share with the original: protocol, client, VIP, backend,
    mode, (TCP state) and the fullnat local address."""
    return {k: row.get(k) for k in FLOW_FIELDS if state or k != "state"}


def table_view(rows: Iterable[dict], state: bool = True) -> dict[tuple, dict]:
    """{(protocol, client, vip): flow_view(row)}; a key seen twice is an error."""
    out: dict[tuple, dict] = {}
    for r in rows:
        k = (r.get("protocol"), r.get("client"), r.get("vip"))
        if k in out:
            raise AssertionError(f"two entries for {k}: {out[k]} and {r}")
        out[k] = flow_view(r, state)
    return out


def table_difference(src: Iterable[dict], dst: Iterable[dict], state: bool = True) -> dict:
    """How dst's table differs from src's: {"missing": [flows of src not in dst], "extra":
    [flows of dst not in src], "different": [(src's, dst's)]}; all empty = the same."""
    a, b = table_view(src, state), table_view(dst, state)
    return {"missing": [a[k] for k in a if k not in b],
            "extra": [b[k] for k in b if k not in a],
            "different": [(a[k], b[k]) for k in a if k in b and a[k] != b[k]]}


def same_table(diff: dict) -> bool:
    return not (diff["missing"] or diff["extra"] or diff["different"])


def wait_tables_match(t: HaLab, src: str, dst: str, *filters: str, timeout: float,
                      state: bool = True, interval: float = 0.01,
                      minimum: int = 1) -> tuple[list[dict], list[dict], float]:
    """Poll both units' connection tables (FILTERS: `connections list` filters) until dst's is
    src's (table_difference empty, at least `minimum` entries); returns (src's rows, dst's rows,
    seconds waited). TimeoutError with the last difference otherwise."""
    t0 = time.monotonic()
    last: dict = {}

    def ok():
        a = connections(t.unit(src), *filters)
        b = connections(t.unit(dst), *filters)
        d = table_difference(a, b, state)
        last.clear()
        last.update({"src": len(a), "dst": len(b), **{k: v[:5] for k, v in d.items()}})
        return (a, b) if len(a) >= minimum and same_table(d) else None
    try:
        a, b = wait_until(ok, timeout=timeout, interval=interval,
                          what=f"{dst}'s connection table to be {src}'s {list(filters)}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last difference: {last}") from None
    return a, b, time.monotonic() - t0


__all__ += ["SyncStatus", "sync_status", "wait_sync", "sync_relays", "sync_loss",
            "sync_peer_via_relay", "connections", "conn_count", "flow_view", "table_view",
            "table_difference", "same_table", "wait_tables_match", "SYNC_DATA_PORT",
            "RELAY_PORT", "FLOW_FIELDS"]
