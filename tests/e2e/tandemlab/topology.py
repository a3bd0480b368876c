"""Ready-made topologies used by the tests and the demo."""

from __future__ import annotations

from dataclasses import dataclass

from .config import PortConfig, UnitConfig, af_packet, af_xdp
from .lab import Lab, Netns
from .tandemd import Tandemd

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
