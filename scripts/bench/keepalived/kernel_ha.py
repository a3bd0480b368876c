"""The Linux standard for two routers in HA: keepalived (VRRPv3) + nftables DNAT + conntrackd
(FTFW, keepalived's notify hooks running conntrackd's primary-backup.sh), in the SAME topology
as tandemlab.ha.ha_lab: the lab is built by ha_lab(start=False) (client, north and south
bridges, two unit namespaces with a sync veth, backends routed via the floating gateway S.1),
and the unit namespaces get a kernel router instead of tandemd (which is never started).

    k = kernel_ha_lab(lab, Settings(external_cache=False), subnet_n=..., subnet_s=..., ...)
    k.wait_roles("a", "b")                 # a is MASTER, b BACKUP, their notify hooks done
    wall = k.fault("a")                    # a's links down, then its daemons SIGKILLed
    k.transitions("b")                     # [("primary", start wall, end wall), ...]
    k.restore("a")                         # a "reboots": links up, daemons again, as BACKUP

Each namespace has its own conntrack table and netfilter hooks, so two routers on one kernel
are a faithful model. Every daemon runs in its namespace with its own pid, lock, socket and
log paths in the lab's workdir; the Lab stops them (their process groups) on close.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

from tandemlab import ha as hal
from tandemlab.lab import Lab
from tandemlab.proc import wait_until

HERE = Path(__file__).resolve().parent
PRIMARY_BACKUP = Path("/usr/share/doc/conntrackd/examples/sync/primary-backup.sh")
PRIORITY = {"a": 150, "b": 100}        # a wins the first election; nopreempt after that
VRID = 51


@dataclass
class Settings:
    """What the benchmark varies on the kernel side (the rest follows the shipped examples)."""
    advert_int: float = 0.01           # keepalived's minimum (centiseconds, VRRPv3)
    conntrackd: bool = True            # False: keepalived + NAT only, no state sync
    mode: str = "FTFW"                 # FTFW | NOTRACK
    external_cache: bool = True        # False: DisableExternalCache on (inject into the kernel)
    resend_queue: int = 131072         # FTFW ResendQueueSize (the default)
    socket_buffer: int = 1249280       # UDP Snd/RcvSocketBuffer (the example's)
    hooks: bool = True                 # notify hooks run primary-backup.sh (else only logged)
    balance: str = "random"            # numgen random | jhash (of saddr . sport)
    # keepalived's VRRP process: nice -20. Not vrrp_rt_priority: keepalived then sets
    # RLIMIT_RTTIME (10 ms by default) and the kernel SIGKILLs the VRRP child when a takeover
    # (VIPs, a GARP burst, forking the hooks) runs longer without blocking; the parent respawns
    # it a second later, in BACKUP, and the takeover costs ~1.2 s (seen in this lab).
    scheduling: str = "vrrp_priority -20"
    garp_repeat: int = 5               # gratuitous ARPs in the takeover burst

    def label(self) -> str:
        if not self.conntrackd:
            return f"keepalived only ({self.balance})"
        cache = "external cache" if self.external_cache else "no external cache"
        parts = [self.mode, cache]
        if self.resend_queue != Settings.resend_queue:
            parts.append(f"ResendQueueSize {self.resend_queue}")
        if not self.hooks:
            parts.append("no commit hook")
        if self.balance != "random":
            parts.append(self.balance)
        return "conntrackd " + ", ".join(parts)


@dataclass
class Daemons:
    keepalived: object | None = None   # tandemlab Background
    conntrackd: object | None = None


@dataclass
class KernelRouter:
    unit: hal.HaUnit                   # the namespace and links ha_lab built (no tandemd)
    files: dict[str, Path]
    daemons: Daemons = field(default_factory=Daemons)

    @property
    def key(self) -> str:
        return self.unit.key


def render(template: str, dest: Path, **values) -> Path:
    dest.write_text(Template((HERE / template).read_text()).substitute(**values))
    return dest


def nat_rules(vip: str, ports: dict[int, list[str]], balance: str) -> str:
    """One DNAT rule per service port: VIP:port -> one of its backends (same port)."""
    rules = []
    for port, hosts in ports.items():
        if len(hosts) == 1:
            rules.append(f"ip daddr {vip} tcp dport {port} dnat to {hosts[0]}")
            continue
        pick = {"random": f"numgen random mod {len(hosts)}",
                "jhash": f"jhash ip saddr . tcp sport mod {len(hosts)} seed 0x5eed"}[balance]
        table = ", ".join(f"{i} : {h}" for i, h in enumerate(hosts))
        rules.append(f"ip daddr {vip} tcp dport {port} dnat to {pick} map {{ {table} }}")
    return "\n".join(f"        {r}" for r in rules)


class KernelHaLab:
    def __init__(self, t: hal.HaLab, settings: Settings, ports: dict[int, list[str]]):
        self.t, self.settings, self.ports = t, settings, ports
        self.lab: Lab = t.lab
        self.routers: dict[str, KernelRouter] = {}
        for key, u in t.units.items():
            files = {"keepalived.conf": "keepalived-{}.conf", "conntrackd.conf": "conntrackd-{}.conf",
                     "nat": "nat-{}.nft", "primary-backup": "primary-backup-{}.sh",
                     "notify": "notify-{}.log", "ctd.ctl": "conntrackd-{}.ctl",
                     "ctd.lock": "conntrackd-{}.lock", "ctd.log": "conntrackd-{}.log",
                     "ka.pid": "keepalived-{}.pid", "ka-vrrp.pid": "keepalived-vrrp-{}.pid",
                     "ka-check.pid": "keepalived-checkers-{}.pid"}
            self.routers[key] = KernelRouter(u, {k: self.lab.workdir / v.format(key)
                                                 for k, v in files.items()})

    def router(self, key: str) -> KernelRouter:
        return self.routers[key]

    # -- building ---------------------------------------------------------------------------
    def configure(self) -> None:
        s, t = self.settings, self.t
        for key, r in self.routers.items():
            u, f, peer = r.unit, r.files, t.other(key)
            u.ns.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            t.lab.addr(u.ns, u.north_if, f"{u.north_ip}/24")
            render("nat.nft.in", f["nat"], unit=key, balance=s.balance,
                   rules=nat_rules(t.vip, self.ports, s.balance))
            u.ns.run(["nft", "-f", str(f["nat"])])
            mode_options = [] if s.mode != "FTFW" else [f"ResendQueueSize {s.resend_queue}"]
            mode_options.append(f"DisableExternalCache {'off' if s.external_cache else 'on'}")
            render("conntrackd.conf.in", f["conntrackd.conf"], unit=key, mode=s.mode,
                   mode_options="\n        ".join(mode_options), own_sync_ip=u.sync_ip,
                   peer_sync_ip=peer.sync_ip, sync_if=u.sync_if, socket_buffer=s.socket_buffer,
                   log_file=f["ctd.log"], lock_file=f["ctd.lock"], ctl_socket=f["ctd.ctl"])
            self._primary_backup(r)
            hook = f["primary-backup"] if s.conntrackd and s.hooks else "/bin/true"
            render("keepalived.conf.in", f["keepalived.conf"], unit=key, north_if=u.north_if,
                   south_if=u.south_if, vrid=VRID, priority=PRIORITY[key],
                   advert_int=f"{s.advert_int:g}", vip=t.vip, gateway=t.floating_ip,
                   notify=f"{HERE / 'notify.sh'} {f['notify']} {hook}",
                   garp_repeat=s.garp_repeat, scheduling=s.scheduling)

    def _primary_backup(self, r: KernelRouter) -> None:
        """conntrackd's primary-backup.sh as shipped, with this instance's paths."""
        f = r.files
        lines = []
        for line in PRIMARY_BACKUP.read_text().splitlines():
            if line.startswith("CONNTRACKD_LOCK="):
                line = f"CONNTRACKD_LOCK={f['ctd.lock']}"
            elif line.startswith("CONNTRACKD_CONFIG="):
                line = f"CONNTRACKD_CONFIG={f['conntrackd.conf']}"
            lines.append(line)
        f["primary-backup"].write_text("\n".join(lines) + "\n")
        f["primary-backup"].chmod(0o755)

    # -- daemons ----------------------------------------------------------------------------
    def start(self, key: str) -> None:
        r = self.routers[key]
        f, ns = r.files, r.unit.ns
        if self.settings.conntrackd:
            f["ctd.lock"].unlink(missing_ok=True)      # what primary-backup.sh does too
            r.daemons.conntrackd = ns.spawn(["conntrackd", "-C", f["conntrackd.conf"]],
                                            log_name=f"conntrackd-{key}-{time.monotonic_ns()}")
            wait_until(lambda: self.ctl(key, "-s", check=False).returncode == 0, timeout=10,
                       interval=0.05, what=f"conntrackd {key} to answer")
            self.ctl(key, "-F")                        # a rebooted router: empty table
        r.daemons.keepalived = ns.spawn(
            ["keepalived", "-n", "-l", "-D", "-P", "-f", f["keepalived.conf"], "-p", f["ka.pid"],
             "-r", f["ka-vrrp.pid"], "-c", f["ka-check.pid"]],
            log_name=f"keepalived-{key}-{time.monotonic_ns()}")

    def ctl(self, key: str, *args: str, check: bool = True):
        r = self.routers[key]
        return r.unit.ns.run(["conntrackd", "-C", str(r.files["conntrackd.conf"]), *args],
                             check=check, timeout=20)

    def start_all(self, timeout: float = 30.0) -> None:
        """A first (the higher priority: it becomes MASTER), then B; then wait until one is
        MASTER and the other BACKUP (at a 10 ms advert interval on a loaded host B sometimes
        misses A's adverts and takes over: nopreempt then keeps it so)."""
        self.start("a")
        self.wait_state("a", "primary", timeout)
        self.start("b")
        wait_until(self.active, timeout=timeout, interval=0.05,
                   what="one keepalived MASTER, the other BACKUP")

    def active(self) -> str | None:
        """The MASTER's key when one is MASTER and the other BACKUP (hooks done), else None."""
        st = {k: self.state(k) for k in self.routers}
        for k, other in (("a", "b"), ("b", "a")):
            if st[k] == "primary" and st[other] == "backup":
                return k
        return None

    # -- the notify log: keepalived's state transitions, with wall-clock times --------------
    def transitions(self, key: str) -> list[tuple[str, float, float | None]]:
        """[(state, start wall time, end wall time or None while the hook runs), ...]."""
        out: list[list] = []
        path = self.routers[key].files["notify"]
        if not path.exists():
            return []
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "start":
                out.append([parts[1], float(parts[2]), None])
            elif len(parts) >= 3 and parts[0] == "done" and out and out[-1][0] == parts[1]:
                out[-1][2] = float(parts[2])
        return [tuple(x) for x in out]

    def state(self, key: str) -> str | None:
        """keepalived's last state once its hook finished (primary/backup/fault), else None."""
        tr = self.transitions(key)
        return tr[-1][0] if tr and tr[-1][2] is not None else None

    def wait_state(self, key: str, state: str, timeout: float) -> None:
        wait_until(lambda: self.state(key) == state, timeout=timeout, interval=0.02,
                   what=f"keepalived {key} to be {state} (hook done)")

    def wait_roles(self, active: str, standby: str, timeout: float = 10.0) -> None:
        self.wait_state(active, "primary", timeout)
        self.wait_state(standby, "backup", timeout)

    # -- the fault and the repair ---------------------------------------------------------------
    def fault(self, key: str) -> float:
        """The kernel router's kill -9: its forwarding stops (every link down, in one `ip`
        call: killing a daemon would not stop the kernel), then keepalived's and conntrackd's
        process groups get SIGKILL. Returns the wall time of the fault (the links are down)."""
        r = self.routers[key]
        u = r.unit
        batch = "".join(f"link set dev {i} down\n" for i in (u.north_if, u.south_if, u.sync_if))
        u.ns.run(["ip", "-batch", "-"], input=batch)
        wall = time.time()                  # forwarding stopped when the links went down
        for p in (r.daemons.keepalived, r.daemons.conntrackd):
            if p is not None and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)   # its own session: the daemon + children
                except ProcessLookupError:
                    pass
                p.kill()
        return wall

    def restore(self, key: str, timeout: float = 30.0) -> None:
        """The failed router comes back as after a reboot: without the floating addresses
        (keepalived died holding them), an empty conntrack table, links up, conntrackd, then
        keepalived (BACKUP: nopreempt). Waits until its backup hook finished."""
        r = self.routers[key]
        u = r.unit
        for addr, dev in ((f"{self.t.vip}/24", u.north_if), (f"{self.t.floating_ip}/24", u.south_if)):
            u.ns.ip("addr", "del", addr, "dev", dev, check=False)
        for i in (u.north_if, u.south_if, u.sync_if):
            self.lab.link_up(u.ns, i)
        self.start(key)
        self.wait_state(key, "backup", timeout)

    # -- what the standby holds -------------------------------------------------------------
    def replicated(self, key: str) -> int | None:
        """Flows the standby `key` holds from its peer: its external cache's entries, or (no
        external cache) its kernel table's."""
        if not self.settings.conntrackd:
            return None
        if self.settings.external_cache:
            out = self.ctl(key, "-e", "ct", check=False).stdout
            return sum(1 for line in out.splitlines() if "tcp" in line)
        return int(self.routers[key].unit.ns.run(
            ["cat", "/proc/sys/net/netfilter/nf_conntrack_count"]).stdout.strip() or 0)

    def stats(self, key: str) -> str:
        return self.ctl(key, "-s", check=False).stdout if self.settings.conntrackd else ""


def kernel_ha_lab(lab: Lab, settings: Settings, *, ports: dict[int, list[str] | None],
                  subnet_n: str, subnet_s: str, subnet_sync: str, n_backends: int = 3,
                  start: bool = True) -> KernelHaLab:
    """ha_lab's topology with kernel routers. ports: {VIP port: [backend addresses] or None
    for every backend}, DNAT keeping the port."""
    t = hal.ha_lab(lab, subnet_n=subnet_n, subnet_s=subnet_s, subnet_sync=subnet_sync,
                   n_backends=n_backends, services=[], start=False, servers=False)
    every = [b.ip for b in t.backends]
    k = KernelHaLab(t, settings, {p: hosts or every for p, hosts in ports.items()})
    k.configure()
    if start:
        k.start_all()
    return k
