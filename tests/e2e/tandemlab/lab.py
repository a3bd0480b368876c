"""Network namespaces, veth pairs and bridges that clean up after themselves.

A Lab owns everything it creates: namespaces, links created outside a namespace, background
processes, DPDK runtime directories and a scratch directory. `Lab.close()` (or leaving the
`with` block) removes all of it, in an order that works even when a test failed half-way.
Labs still open when the interpreter exits are closed by an atexit hook, and leftovers of a
process that was SIGKILLed are found by `cleanup_stale()` (names carry the owner's pid).

Naming: every namespace is called  <prefix><pid>-<tag>-<role>  (e.g. tl4242-9f3a-client), and
links created in the root namespace carry the alias  tandemlab:<pid>:<lab id>.
Interface names are checked against IFNAMSIZ (at most 15 characters).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from .proc import run

IFNAMSIZ_MAX = 15
DEFAULT_PREFIX = "tl"
DPDK_RUNTIME_ROOT = Path("/var/run/dpdk")
ALIAS_PREFIX = "tandemlab"
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

_live_labs: list["Lab"] = []
_live_lock = threading.Lock()


def check_ifname(name: str) -> str:
    if not _IFNAME_RE.match(name):
        raise ValueError(f"bad interface name {name!r}: 1..{IFNAMSIZ_MAX} chars of [A-Za-z0-9_.-]")
    return name


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _warn(msg: str) -> None:
    print(f"tandemlab: {msg}", file=sys.stderr, flush=True)


class Netns:
    """One named network namespace (created by Lab.netns)."""

    def __init__(self, lab: "Lab", name: str, role: str):
        self.lab = lab
        self.name = name
        self.role = role

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    # -- running things inside ---------------------------------------------------------------
    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *[str(a) for a in argv]]

    def run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """Run a command inside the namespace (bounded; see proc.run)."""
        return run(self.exec_argv(argv), **kw)

    def ip(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.name, *args], **kw)

    def ip_json(self, *args: str) -> list:
        out = run(["ip", "-n", self.name, "-j", *args]).stdout.strip()
        return json.loads(out) if out else []

    def spawn(self, argv: Sequence[str], log_name: str, env: dict | None = None) -> "Background":
        """Start a background process inside the namespace; the lab stops it on close."""
        return self.lab.spawn(self, argv, log_name, env=env)

    def python(self, code: str, *args: str, **kw) -> subprocess.CompletedProcess:
        """Run `python3 -c code args...` inside the namespace (this interpreter; stdlib only)."""
        return self.run([sys.executable, "-c", code, *args], **kw)

    def spawn_python(self, code: str, *args: str, log_name: str) -> "Background":
        """Start `python3 -c code args...` in the background inside the namespace."""
        return self.spawn([sys.executable, "-c", code, *args], log_name=log_name)

    # -- inspection ---------------------------------------------------------------------------
    def mac(self, ifname: str) -> str:
        links = self.ip_json("link", "show", "dev", ifname)
        if not links:
            raise LookupError(f"no link {ifname} in {self.name}")
        return links[0]["address"].lower()

    def ipv4_addresses(self, ifname: str) -> list[str]:
        out = []
        for link in self.ip_json("-4", "addr", "show", "dev", ifname):
            for a in link.get("addr_info", []):
                if a.get("family") == "inet":
                    out.append(f"{a['local']}/{a['prefixlen']}")
        return out

    def neighbours(self, ifname: str | None = None) -> list[dict]:
        """The kernel neighbour table: [{"dst", "lladdr", "state": [...], "dev"}, ...]."""
        args = ["neigh", "show"] + (["dev", ifname] if ifname else [])
        return self.ip_json(*args)

    def neighbour(self, address: str, ifname: str | None = None) -> dict | None:
        for n in self.neighbours(ifname):
            if n.get("dst") == address:
                return n
        return None

    def xdp(self, ifname: str) -> dict | None:
        """The XDP attachment of a link as `ip -j link show` reports it ({"mode": 1 (native) |
        2 (generic), "prog": {"id", "name", ...}, ...}), or None when no program is attached."""
        links = self.ip_json("link", "show", "dev", ifname)
        if not links:
            raise LookupError(f"no link {ifname} in {self.name}")
        return links[0].get("xdp")

    def snmp(self) -> dict[str, dict[str, int]]:
        """The namespace's /proc/net/snmp: {"Ip": {"InReceives": n, "InUnknownProtos": n, ...},
        "Udp": {"InDatagrams": n, "InCsumErrors": n, ...}, "Icmp": {...}, ...}."""
        lines = self.run(["cat", "/proc/net/snmp"], timeout=10).stdout.splitlines()
        out: dict[str, dict[str, int]] = {}
        for head, values in zip(lines[::2], lines[1::2]):
            group, _, names = head.partition(":")
            numbers = values.partition(":")[2].split()
            out[group] = {k: int(v) for k, v in zip(names.split(), numbers)}
        return out

    def link_stats(self, ifname: str) -> dict:
        """{"rx": {"packets", "bytes", ...}, "tx": {...}} of a link (`ip -s` stats64)."""
        return self.ip_json("-s", "link", "show", "dev", ifname)[0]["stats64"]

    def pids(self) -> list[int]:
        cp = run(["ip", "netns", "pids", self.name], check=False, timeout=10)
        return [int(p) for p in cp.stdout.split() if p.isdigit()]

    def diagnostics(self) -> str:
        parts = []
        for args in (("addr",), ("neigh",), ("route",)):
            cp = run(["ip", "-n", self.name, *args], check=False, timeout=10)
            parts.append(f"$ ip -n {self.name} {' '.join(args)}\n{cp.stdout}{cp.stderr}".rstrip())
        return "\n".join(parts)


class Background:
    """A background process started by a Lab; stdin is /dev/null, stdout+stderr go to a log."""

    def __init__(self, argv: list[str], log_path: Path, env: dict | None, name: str):
        self.argv = argv
        self.log_path = log_path
        self.name = name
        self._logf = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=_die_with_parent)
        self.pid = self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait_output(self, needle: str, timeout: float = 10.0) -> str:
        """Wait until the log contains needle (e.g. a server's "ready" line); returns the log.
        Fails at once if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if needle in text:
                return text
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before printing "
                                   f"{needle!r}:\n{text}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name} did not print {needle!r} within {timeout:g}s:\n"
                                   f"{text}")
            time.sleep(0.05)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0, sig: int | None = None) -> int:
        """Send sig (default SIGTERM), wait up to timeout, then SIGKILL. Returns the exit
        status (negative signal number if killed by a signal, as subprocess reports it)."""
        sig = signal.SIGTERM if sig is None else sig
        if self.proc.poll() is None:
            self.signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _warn(f"{self.name} (pid {self.proc.pid}) ignored signal {sig} for {timeout:g}s; "
                      "sending SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL and reap it (no grace period, so no warning about an ignored signal)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if not self._logf.closed:
            self._logf.close()

    def close(self) -> None:
        self.stop()


def _die_with_parent() -> None:
    """preexec_fn: ask the kernel to SIGTERM the child if the lab's process dies."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort only
        pass


class Lab:
    """Owner of a set of namespaces, links and processes. Use as a context manager."""

    def __init__(self, prefix: str = DEFAULT_PREFIX, keep_workdir: bool | None = None):
        if not re.match(r"^[a-z]{1,4}$", prefix):
            raise ValueError("prefix must be 1-4 lowercase letters")
        self.prefix = prefix
        self.tag = secrets.token_hex(2)
        self.owner_pid = os.getpid()
        self.id = f"{prefix}{self.owner_pid}-{self.tag}"
        if keep_workdir is None:
            keep_workdir = bool(os.environ.get("TANDEMLAB_KEEP"))
        self.keep_workdir = keep_workdir
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tandemlab-{self.id}-"))
        self.namespaces: list[Netns] = []
        self.root_links: list[str] = []          # links we made in the root namespace
        self.processes: list[Background] = []
        self.runtime_dirs: list[Path] = []       # DPDK runtime dirs to remove after stop
        self.finalizers: list = []               # callables run after processes stop
        self.closed = False
        self._veth_count = 0
        with _live_lock:
            _live_labs.append(self)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({self.id!r})"

    # -- names ------------------------------------------------------------------------------
    def ifname(self, stem: str) -> str:
        """A unique interface name: stem + lab tag (e.g. 'vc' -> 'vc9f3a'), at most 15 chars."""
        return check_ifname(f"{stem}{self.tag}")

    # -- building -----------------------------------------------------------------------------
    def netns(self, role: str, ipv6: bool = False) -> Netns:
        """Create a namespace named <lab id>-<role> with lo up. IPv6 is disabled by default so
        that router solicitations and MLD reports do not add noise to the unit's counters."""
        if not re.match(r"^[a-z0-9]{1,16}$", role):
            raise ValueError("role must be 1-16 chars of [a-z0-9]")
        name = f"{self.id}-{role}"
        if any(ns.name == name for ns in self.namespaces):
            raise ValueError(f"namespace role {role!r} already used in this lab")
        ns = Netns(self, name, role)
        self.namespaces.append(ns)      # recorded first: an interrupt mid-add still cleans up
        run(["ip", "netns", "add", name])
        if not ipv6:
            for key in ("all", "default"):
                ns.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False)
        ns.ip("link", "set", "lo", "up")
        return ns

    def _ip(self, ns: Netns | None, *args: str, **kw) -> subprocess.CompletedProcess:
        return ns.ip(*args, **kw) if ns is not None else run(["ip", *args], **kw)

    def _exec(self, ns: Netns | None, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        return ns.run(argv, **kw) if ns is not None else run(argv, **kw)

    def _mark_root_link(self, name: str) -> None:
        if name not in self.root_links:
            self.root_links.append(name)
        run(["ip", "link", "set", "dev", name, "alias",
             f"{ALIAS_PREFIX}:{self.owner_pid}:{self.id}"], check=False)

    def veth(self, ns_a: Netns | None, ns_b: Netns | None, name_a: str | None = None,
             name_b: str | None = None, *, up: bool = True, tx_off: bool = True,
             mtu: int | None = None) -> tuple[str, str]:
        """Create a veth pair with one end in ns_a and the other in ns_b (None = root namespace).

        Both ends are set up and get `ethtool -K IF tx off` (without it veth passes frames with
        partial checksums to AF_XDP / AF_PACKET readers and kernel peers see bad checksums).
        Returns (name_a, name_b).
        """
        self._veth_count += 1
        name_a = check_ifname(name_a or f"v{self.tag}{self._veth_count}a")
        name_b = check_ifname(name_b or f"v{self.tag}{self._veth_count}b")
        argv = ["ip", "link", "add", name_a]
        if ns_a is not None:
            argv += ["netns", ns_a.name]
        argv += ["type", "veth", "peer", "name", name_b]
        if ns_b is not None:
            argv += ["netns", ns_b.name]
        # record root-namespace ends before creating them, so an interrupt cannot leak them
        self.root_links += [n for n, ns in ((name_a, ns_a), (name_b, ns_b)) if ns is None]
        run(argv)
        if ns_a is None:
            self._mark_root_link(name_a)
        if ns_b is None:
            self._mark_root_link(name_b)
        for ns, name in ((ns_a, name_a), (ns_b, name_b)):
            if mtu:
                self._ip(ns, "link", "set", "dev", name, "mtu", str(mtu))
            if tx_off:
                self._exec(ns, ["ethtool", "-K", name, "tx", "off"])
            if up:
                self._ip(ns, "link", "set", "dev", name, "up")
        return name_a, name_b

    def bridge(self, ns: Netns | None, name: str | None = None) -> str:
        """Create a Linux bridge (STP off, so ports forward at once) and set it up."""
        name = check_ifname(name or self.ifname("br"))
        if ns is None:
            self.root_links.append(name)
        self._ip(ns, "link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        if ns is None:
            self._mark_root_link(name)
        self._ip(ns, "link", "set", "dev", name, "up")
        return name

    def attach(self, ns: Netns | None, ifname: str, bridge: str) -> None:
        self._ip(ns, "link", "set", "dev", ifname, "master", bridge)

    def addr(self, ns: Netns | None, ifname: str, cidr: str) -> None:
        self._ip(ns, "addr", "add", cidr, "dev", ifname)

    def link_up(self, ns: Netns | None, ifname: str) -> None:
        self._ip(ns, "link", "set", "dev", ifname, "up")

    def link_down(self, ns: Netns | None, ifname: str) -> None:
        self._ip(ns, "link", "set", "dev", ifname, "down")

    # -- processes ----------------------------------------------------------------------------
    def spawn(self, ns: Netns | None, argv: Sequence[str], log_name: str,
              env: dict | None = None) -> Background:
        argv = [str(a) for a in argv]
        full = ns.exec_argv(argv) if ns is not None else argv
        log_path = self.workdir / f"{log_name}.log"
        p = Background(full, log_path, env, name=log_name)
        self.processes.append(p)
        return p

    def add_runtime_dir(self, path: str | Path) -> None:
        self.runtime_dirs.append(Path(path))

    def on_close(self, fn) -> None:
        """Call fn() during close(), after the processes have stopped."""
        self.finalizers.append(fn)

    # -- reporting ----------------------------------------------------------------------------
    def diagnostics(self, log_tail: int = 200) -> list[tuple[str, str]]:
        """(title, text) pairs: each process's log (last lines) and each namespace's addresses,
        neighbours and routes. Used by the pytest hook when a test fails."""
        out: list[tuple[str, str]] = []
        for p in self.processes:
            lines = p.log().splitlines()
            state = "running" if p.poll() is None else f"exited {p.returncode}"
            head = f"[{p.name}: pid {p.pid}, {state}; {p.log_path}]\n$ {' '.join(p.argv)}"
            if len(lines) > log_tail:
                head += f"\n... ({len(lines) - log_tail} earlier lines omitted)"
            out.append((f"log {p.name}", head + "\n" + "\n".join(lines[-log_tail:])))
        for ns in self.namespaces:
            try:
                out.append((f"netns {ns.role}", ns.diagnostics()))
            except Exception as e:  # noqa: BLE001
                out.append((f"netns {ns.role}", f"(could not inspect: {e})"))
        return out

    def format_diagnostics(self) -> str:
        return "\n".join(f"===== {t} =====\n{body}" for t, body in self.diagnostics())

    # -- teardown -----------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Stop processes, delete links and namespaces, remove runtime dirs and the workdir.

        Idempotent. SIGINT/SIGTERM are held back while it runs (in the main thread) so that a
        second Ctrl-C cannot leave half a lab behind. Returns the errors met (also printed)."""
        if self.closed:
            return []
        in_main = threading.current_thread() is threading.main_thread()
        old_mask = None
        if in_main:
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        errors: list[str] = []
        try:
            self._close(errors)
        finally:
            self.closed = True
            with _live_lock:
                if self in _live_labs:
                    _live_labs.remove(self)
            if old_mask is not None:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for e in errors:
            _warn(e)
        return errors

    def _close(self, errors: list[str]) -> None:
        for p in reversed(self.processes):
            try:
                p.stop(timeout=10)
            except Exception as e:  # noqa: BLE001
                errors.append(f"stopping {p.name}: {e}")
        for fn in reversed(self.finalizers):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                errors.append(f"finalizer {fn!r}: {e}")
        # anything else still running inside our namespaces (started by hand, or forked)
        for ns in self.namespaces:
            for pid in ns.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for name in reversed(self.root_links):
            cp = run(["ip", "link", "del", "dev", name], check=False, timeout=10)
            if cp.returncode != 0 and "Cannot find device" not in cp.stderr:
                errors.append(f"deleting link {name}: {cp.stderr.strip()}")
        for ns in reversed(self.namespaces):
            cp = run(["ip", "netns", "del", ns.name], check=False, timeout=10)
            if cp.returncode != 0 and "No such file" not in cp.stderr:
                errors.append(f"deleting netns {ns.name}: {cp.stderr.strip()}")
        for d in self.runtime_dirs:
            shutil.rmtree(d, ignore_errors=True)
        if self.keep_workdir:
            _warn(f"kept lab files in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def close_all_labs() -> None:
    """Close every lab of this process that is still open (atexit hook)."""
    with _live_lock:
        labs = [lab for lab in _live_labs if lab.owner_pid == os.getpid()]
    for lab in reversed(labs):
        try:
            lab.close()
        except Exception as e:  # noqa: BLE001
            _warn(f"closing {lab.id}: {e}")


atexit.register(close_all_labs)


def install_signal_handlers(signals: Iterable[int] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so that `with Lab()` blocks and finally clauses run
    (SIGINT already raises KeyboardInterrupt). For scripts such as the demo."""
    def handler(signum, _frame):
        raise SystemExit(128 + signum)
    for s in signals:
        signal.signal(s, handler)


def list_netns() -> list[str]:
    cp = run(["ip", "-j", "netns", "list"], check=False, timeout=10)
    try:
        return [e["name"] for e in json.loads(cp.stdout or "[]")]
    except json.JSONDecodeError:
        return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def leftovers(lab_id: str) -> list[str]:
    """Names of namespaces, root links and files of a lab that still exist (for self-tests)."""
    found = [f"netns {n}" for n in list_netns() if n.startswith(lab_id + "-")]
    cp = run(["ip", "-j", "link", "show"], check=False, timeout=10)
    for link in json.loads(cp.stdout or "[]"):
        if str(link.get("ifalias", "")).endswith(":" + lab_id):
            found.append(f"link {link['ifname']}")
    found += [f"dir {p}" for p in DPDK_RUNTIME_ROOT.glob(lab_id + "-*")]
    found += [f"dir {p}" for p in Path(tempfile.gettempdir()).glob(f"tandemlab-{lab_id}-*")]
    return found


def cleanup_stale(prefix: str = DEFAULT_PREFIX, verbose: bool = True) -> list[str]:
    """Remove namespaces, links, DPDK runtime dirs and workdirs left by lab owners that no
    longer run (e.g. a test run that was SIGKILLed). Returns what was removed."""
    removed: list[str] = []
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)-[0-9a-f]{{4}}(-|$)")

    def stale(name: str) -> bool:
        m = pat.match(name)
        return bool(m) and not _pid_alive(int(m.group(1)))

    for name in list_netns():
        if not stale(name):
            continue
        cp = run(["ip", "netns", "pids", name], check=False, timeout=10)
        for pid in cp.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        if cp.stdout.split():
            time.sleep(0.2)
        run(["ip", "netns", "del", name], check=False, timeout=10)
        removed.append(f"netns {name}")
    cp = run(["ip", "-j", "link", "show"], check=False, timeout=10)
    try:
        links = json.loads(cp.stdout or "[]")
    except json.JSONDecodeError:
        links = []
    for link in links:
        m = re.match(rf"^{ALIAS_PREFIX}:(\d+):({re.escape(prefix)}\S*)$", str(link.get("ifalias", "")))
        if m and not _pid_alive(int(m.group(1))):
            run(["ip", "link", "del", "dev", link["ifname"]], check=False, timeout=10)
            removed.append(f"link {link['ifname']}")
    if DPDK_RUNTIME_ROOT.is_dir():
        for d in DPDK_RUNTIME_ROOT.iterdir():
            if stale(d.name):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"dir {d}")
    for d in Path(tempfile.gettempdir()).glob("tandemlab-*"):
        if os.environ.get("TANDEMLAB_KEEP"):
            break  # kept on purpose for debugging
        if stale(d.name[len("tandemlab-"):]):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"dir {d}")
    if verbose and removed:
        _warn("removed leftovers of earlier runs: " + ", ".join(removed))
    return removed
