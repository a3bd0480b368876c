"""Ready-made topologies used by the tests and the demo."""

from __future__ import annotations

from dataclasses import dataclass

from .config import PortConfig, UnitConfig, af_packet, af_xdp
from .lab import Lab, Netns
from .tandemd import Tandemd, tandem_decap
from .traffic import ping

DRIVERS = {"af_xdp": af_xdp, "af_packet": af_packet}


@dataclass
class ClientUnit:
    """A client namespace and a unit namespace joined by one veth pair:

        [client ns] client_if  <--veth-->  unit_if [unit ns: tandemd, port north0]
                    client_ip                      unit_ip
                                                   kernel_ip (optional: the unit namespace's
                                                   kernel's own address on the same veth)
    """
    lab: Lab
    client: Netns
    unit_ns: Netns
    client_if: str
    unit_if: str
    client_ip: str
    unit_ip: str
    prefixlen: int
    client_mac: str
    unit_mac: str
    unit: Tandemd
    port: str = "north0"
    kernel_ip: str | None = None

    def subnet_host(self, host: int) -> str:
        """Another address in the same /24 (e.g. one nobody owns)."""
        return self.client_ip.rsplit(".", 1)[0] + f".{host}"


def client_and_unit(lab: Lab, *, driver: str = "af_xdp", subnet: str = "10.199.1",
                    gateway: bool = False, start: bool = True, unit_name: str = "tandem-a",
                    port: str = "north0", ready_timeout: float = 30.0,
                    kernel_host: int | None = None, port_kw: dict | None = None,
                    **config_kw) -> ClientUnit:
    """Build the client/unit pair on subnet <subnet>.0/24 (client .1, unit .2) and, unless
    start=False, start tandemd with one port on the unit's veth end and wait until it is ready.
    gateway=True configures the client's address as the port's gateway. kernel_host=3 also gives
    the unit namespace's kernel <subnet>.3/24 on the same veth (with XDP steering the kernel
    keeps answering for it). port_kw go to PortConfig (e.g. secondary_addresses=[...],
    xdp_steering=False); config_kw go to UnitConfig (e.g. log_level="debug", extra={...})."""
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {sorted(DRIVERS)}")
    client = lab.netns("client")
    unit_ns = lab.netns("unit")
    client_if, unit_if = lab.veth(client, unit_ns, lab.ifname("cli"), lab.ifname("north"))
    client_ip, unit_ip = f"{subnet}.1", f"{subnet}.2"
    lab.addr(client, client_if, f"{client_ip}/24")
    kernel_ip = f"{subnet}.{kernel_host}" if kernel_host is not None else None
    if kernel_ip:
        lab.addr(unit_ns, unit_if, f"{kernel_ip}/24")
    port_cfg = PortConfig(port, DRIVERS[driver](unit_if), f"{unit_ip}/24",
                          gateway=client_ip if gateway else None, **(port_kw or {}))
    cfg = UnitConfig(name=unit_name, file_prefix=f"{lab.id}-{unit_name}", ports=[port_cfg],
                     **config_kw)
    unit = Tandemd(lab, unit_ns, cfg)
    topo = ClientUnit(lab=lab, client=client, unit_ns=unit_ns, client_if=client_if,
                      unit_if=unit_if, client_ip=client_ip, unit_ip=unit_ip, prefixlen=24,
                      client_mac=client.mac(client_if), unit_mac=unit_ns.mac(unit_if),
                      unit=unit, port=port, kernel_ip=kernel_ip)
    if start:
        unit.start(timeout=ready_timeout)
    return topo


# --- load balancing: a client, a unit with a north and a south port, backends behind a switch ---

LB_MODES = ("nat", "fullnat", "dsr", "tunnel")


@dataclass
class LbBackendHost:
    name: str          # b1, b2, ...
    ns: Netns
    ifname: str
    ip: str
    mac: str


@dataclass
class LbLab:
    """What lb_lab() built (see there)."""
    lab: Lab
    mode: str
    client: Netns
    unit_ns: Netns
    switch: Netns
    backends: list[LbBackendHost]
    client_if: str
    client_ip: str
    unit_north_if: str
    unit_north_ip: str
    unit_south_if: str
    unit_south_ip: str
    vip: str
    subnet_a: str
    subnet_b: str
    config: UnitConfig
    unit: Tandemd
    bridge: str
    local_address: str | None = None      # fullnat: the source address towards backends
    client_b_if: str | None = None        # dsr/tunnel: the client's leg on the backends' switch
    client_b_ip: str | None = None

    def backend(self, name: str) -> LbBackendHost:
        return next(b for b in self.backends if b.name == name)

    def backend_by_ip(self, ip: str) -> LbBackendHost:
        return next(b for b in self.backends if b.ip == ip)


def lb_lab(lab: Lab, mode: str, *, subnet_a: str, subnet_b: str, vip: str,
           n_backends: int = 3, services=(), start: bool = True, mtu_b: int | None = None,
           unit_name: str = "tandem-a", warm: bool = True, ready_timeout: float = 30.0,
           queues: int = 1, driver: str = "af_xdp", south_xdp_steering: bool | None = None,
           **config_kw) -> LbLab:
    """A load-balancing lab for one forwarding mode:

        [client] cli<tag> A.1 ──veth── north<tag> [unit: tandemd north0 A.2 (role north)
                                                          south0 B.1 (role south)]  south<tag>
                                                                                        │
        [switch: bridge br<tag>] ─────────────────────────────────────────────── sw0<tag>
            ├─ swb1<tag> ── be<tag> [backend1: B.21]    (b1)
            ├─ swb2<tag> ── be<tag> [backend2: B.22]    (b2)  ...
            └─ swc<tag>  ── clb<tag> [client: B.100]    (dsr and tunnel only)

    A = subnet_a, B = subnet_b ("10.199.N" strings, /24). The client reaches the VIP through a
    route via the unit's north address (the unit does not answer ARP for VIPs). The backends:
      nat      default route via the unit's south address B.1: replies must cross the unit to
               be translated back. With XDP steering on the south port, the program steers
               them by their source (backend address, protocol and port: steer_sources).
      fullnat  no route to A at all (they only ever answer the unit's local address B.5, a
               secondary address of the south port so that tandemd answers ARP for it; XDP
               steers it as a local address).
      dsr      the VIP on lo (arp_ignore=1, arp_announce=2) and a route to A via the client's
               second leg B.100: replies go to the client directly, not through the unit.
      tunnel   as dsr, plus tandem-decap on the backend's interface for the VIP.
    In dsr and tunnel mode the client gets replies on another interface than the one its
    route to the VIP uses, so its rp_filter is off.

    services: tandemlab ServiceConfig objects (with `mode`) put in the config as they are.
    driver: "af_xdp" (default) or "af_packet" for both unit ports (no XDP steering then).
    queues: >1 runs tandemd with that many workers (lcores "0,1,..") and as many queues per
    port: af_packet qpairs=N (PACKET_FANOUT by flow hash). DPDK 22.11's af_xdp PMD takes one
    queue on veth (veth reports no "combined" channels), so af_xdp needs queues=1.
    mtu_b: MTU of the south segment (the unit's south port too), e.g. 1600 for tunnel mode so
    that an encapsulated full-size segment (+20 bytes) fits. warm: each backend pings the unit's
    south address and the client its north address before returning, so tandemd has learnt
    their MACs (from their ARP requests) and the first packets are not dropped as unresolved.
    south_xdp_steering: the south port's xdp_steering (None: tandemd's default, on for af_xdp;
    False: the PMD's default program hands DPDK every frame of the south interface).
    config_kw go to UnitConfig."""
    if mode not in LB_MODES:
        raise ValueError(f"mode must be one of {LB_MODES}")
    if driver not in DRIVERS:
        raise ValueError(f"driver must be one of {sorted(DRIVERS)}")
    if queues > 1 and driver != "af_packet":
        raise ValueError("queues > 1 needs driver='af_packet' (af_xdp on veth has one queue)")
    client = lab.netns("client")
    unit_ns = lab.netns("unit")
    switch = lab.netns("switch")
    client_if, north_if = lab.veth(client, unit_ns, lab.ifname("cli"), lab.ifname("north"))
    south_if, sw0 = lab.veth(unit_ns, switch, lab.ifname("south"), lab.ifname("sw0"), mtu=mtu_b)
    bridge = lab.bridge(switch, lab.ifname("br"))
    if mtu_b:
        switch.ip("link", "set", "dev", bridge, "mtu", str(mtu_b))
    lab.attach(switch, sw0, bridge)
    client_ip, north_ip = f"{subnet_a}.1", f"{subnet_a}.2"
    south_ip = f"{subnet_b}.1"
    lab.addr(client, client_if, f"{client_ip}/24")
    client.ip("route", "add", f"{vip}/32", "via", north_ip)
    direct = mode in ("dsr", "tunnel")
    client_b_if = client_b_ip = None
    if direct:
        client_b_if, swc = lab.veth(client, switch, lab.ifname("clb"), lab.ifname("swc"),
                                    mtu=mtu_b)
        lab.attach(switch, swc, bridge)
        client_b_ip = f"{subnet_b}.100"
        lab.addr(client, client_b_if, f"{client_b_ip}/24")
        for key in ("all", "default", client_if, client_b_if):
            client.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.rp_filter=0"])

    backends: list[LbBackendHost] = []
    for i in range(1, n_backends + 1):
        ns = lab.netns(f"backend{i}")
        b_if, sw_if = lab.veth(ns, switch, lab.ifname("be"), lab.ifname(f"swb{i}"), mtu=mtu_b)
        lab.attach(switch, sw_if, bridge)
        ip = f"{subnet_b}.{20 + i}"
        lab.addr(ns, b_if, f"{ip}/24")
        if mode == "nat":
            ns.ip("route", "add", "default", "via", south_ip)
        elif direct:
            lab.addr(ns, "lo", f"{vip}/32")
            for key in ("all", b_if):
                ns.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.arp_ignore=1"])
                ns.run(["sysctl", "-qw", f"net.ipv4.conf.{key}.arp_announce=2"])
            ns.ip("route", "add", f"{subnet_a}.0/24", "via", client_b_ip)
            if mode == "tunnel":
                tandem_decap(ns, "attach", b_if, "--vip", vip)
        backends.append(LbBackendHost(name=f"b{i}", ns=ns, ifname=b_if, ip=ip, mac=ns.mac(b_if)))

    local_address = f"{subnet_b}.5" if mode == "fullnat" else None
    south_kw: dict = {}
    if south_xdp_steering is not None and driver == "af_xdp":
        south_kw["xdp_steering"] = south_xdp_steering
    if local_address:
        south_kw["secondary_addresses"] = [f"{local_address}/24"]
    if mtu_b:
        south_kw["extra"] = {"mtu": mtu_b}
    qkw = {"qpairs": queues} if queues > 1 else {}
    if queues > 1:
        config_kw.setdefault("lcores", ",".join(str(i) for i in range(queues)))
    dev = DRIVERS[driver]
    ports = [PortConfig("north0", dev(north_if, **qkw), f"{north_ip}/24", role="north"),
             PortConfig("south0", dev(south_if, index=1, **qkw), f"{south_ip}/24",
                        role="south", **south_kw)]
    cfg = UnitConfig(name=unit_name, file_prefix=f"{lab.id}-{unit_name}", ports=ports,
                     services=list(services), **config_kw)
    unit = Tandemd(lab, unit_ns, cfg)
    topo = LbLab(lab=lab, mode=mode, client=client, unit_ns=unit_ns, switch=switch,
                 backends=backends, client_if=client_if, client_ip=client_ip,
                 unit_north_if=north_if, unit_north_ip=north_ip, unit_south_if=south_if,
                 unit_south_ip=south_ip, vip=vip, subnet_a=subnet_a, subnet_b=subnet_b,
                 config=cfg, unit=unit, bridge=bridge, local_address=local_address,
                 client_b_if=client_b_if, client_b_ip=client_b_ip)
    if start:
        unit.start(timeout=ready_timeout)
        if warm:
            warm_neighbours(topo)
    return topo


def warm_neighbours(t: LbLab) -> None:
    """Let tandemd learn the client's and every backend's MAC from their ARP requests (they
    ping the unit), so that no first packet is dropped as lb_neighbour_unresolved."""
    for ns, address in [(t.client, t.unit_north_ip)] + [(b.ns, t.unit_south_ip)
                                                        for b in t.backends]:
        r = ping(ns, address, count=1, interval=0.2, wait=2)
        if r.received != 1:
            raise RuntimeError(f"{ns.name} cannot ping the unit at {address}:\n{r.output}")

