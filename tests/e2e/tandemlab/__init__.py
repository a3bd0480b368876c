"""tandemlab: a small test lab for Tandem on one Linux machine (root needed).

Network namespaces joined by veth pairs or bridges, tandemd started inside a namespace with
sd_notify readiness, DPDK telemetry queries, kernel-side traffic helpers, and teardown that
leaves nothing behind. Used by the pytest suite in tests/e2e and by scripts/demo.py.

    from tandemlab import Lab, Tandemd, UnitConfig, PortConfig, af_xdp, ping

    with Lab() as lab:
        client, unit_ns = lab.netns("client"), lab.netns("unit")
        c_if, u_if = lab.veth(client, unit_ns, "cli0", "uplink0")
        lab.addr(client, c_if, "10.199.1.1/24")
        cfg = UnitConfig(name="tandem-a", file_prefix=f"{lab.id}-a",
                         ports=[PortConfig("north0", af_xdp(u_if), "10.199.1.2/24")])
        unit = Tandemd(lab, unit_ns, cfg).start()
        print(ping(client, "10.199.1.2").received, unit.counters())
"""

from .config import (BackendConfig, FloatingAddress, HaConfig, HaGroup, HaTrack, HealthCheck,
                     PortConfig, ServiceConfig, UnitConfig, af_packet, af_xdp, dumps_toml)
from .lab import (Background, Lab, Netns, check_ifname, cleanup_stale, close_all_labs,
                  install_signal_handlers, leftovers, list_netns)
from .proc import CommandError, run, wait_until
from .tandemd import (CtlError, tandemctl_binary, DECAP_VERDICTS, FINAL_COUNTERS_MARK, READY_LOG_LINE, RELOAD_LOG_LINE,
                      RELOAD_REFUSED, RELOAD_UNCHANGED, STALE_STEERING_LOG, NotifySocket, Tandemd,
                      TandemdError, check_config, decap_status, default_binary,
                      default_decap_binary, parse_counter_lines, parse_decap_status,
                      parse_final_xdp, repo_root, tandem_decap)
from .telemetry import (TelemetryClient, TelemetryError, parse_blocklist, parse_counters,
                        parse_neighbours, socket_path, telemetry)
from .topology import (DRIVERS, LB_MODES, ClientUnit, LbBackendHost, LbLab, client_and_unit, lb_lab,
                       warm_neighbours)
from .traffic import (ArpingResult, EchoClients, HttpBurst, LbBackend, PingResult, TcpHashServer,
                      UdpSink, arping, ether_frame, expected_sha256, http_burst, inet_checksum,
                      ipip_packet, ipv4_packet, parse_arping, parse_ping, ping, send_frames,
                      static_neighbour, tcp_hash_exchange, udp_flows, udp_packet)
from .ha import (BackendHealth, Failover, HaLab, HaStatus, HaUnit, active_unit, actives,
                 backend_health, client_neighbour_mac, ha_lab, role, roles, status,
                 wait_backend_health, wait_roles, watch_roles)

__all__ = [
    "BackendConfig", "PortConfig", "ServiceConfig", "UnitConfig", "af_packet", "af_xdp",
    "dumps_toml", "FloatingAddress", "HaConfig", "HaGroup", "HaTrack", "HealthCheck",
    "Background", "Lab", "Netns", "check_ifname", "cleanup_stale", "close_all_labs",
    "install_signal_handlers", "leftovers", "list_netns",
    "CommandError", "run", "wait_until",
    "FINAL_COUNTERS_MARK", "READY_LOG_LINE", "RELOAD_LOG_LINE", "RELOAD_REFUSED",
    "RELOAD_UNCHANGED", "STALE_STEERING_LOG", "NotifySocket", "Tandemd", "TandemdError",
    "CtlError", "tandemctl_binary", "check_config", "default_binary", "parse_counter_lines", "parse_final_xdp", "repo_root",
    "DECAP_VERDICTS", "decap_status", "default_decap_binary", "parse_decap_status",
    "tandem_decap",
    "TelemetryClient", "TelemetryError", "parse_blocklist", "parse_counters", "parse_neighbours",
    "socket_path", "telemetry",
    "DRIVERS", "ClientUnit", "client_and_unit",
    "LB_MODES", "LbBackendHost", "LbLab", "lb_lab", "warm_neighbours",
    "ArpingResult", "PingResult", "TcpHashServer", "UdpSink",
    "EchoClients", "HttpBurst", "LbBackend", "http_burst", "udp_flows", "arping", "ether_frame",
    "expected_sha256", "inet_checksum", "ipip_packet", "ipv4_packet", "parse_arping",
    "parse_ping", "ping", "send_frames", "static_neighbour", "tcp_hash_exchange", "udp_packet",
    "BackendHealth", "Failover", "HaLab", "HaStatus", "HaUnit", "active_unit", "actives",
    "backend_health", "client_neighbour_mac", "ha_lab", "role", "roles", "status",
    "wait_backend_health", "wait_roles", "watch_roles",
]
