#!/usr/bin/python3
"""State sync under a new-connection load: replication throughput, lag and CPU, on this machine.

    tandem_gen (lcore 0)  --memif-->  unit A: tandemd, worker lcore 1, [ha] + [sync]   netns A
                                         (tandem_gen too: memif's socket is abstract)
      every frame a TCP SYN              |  sync UDP (and the HA adverts) on a veth pair
      of a new 5-tuple                   v
                                      unit B: tandemd, net_null ports, no traffic      netns B

Unit A is fastpath.py's tandemd (same configuration: one worker, a nat service with four
backends, memif ports fed by tandem_gen --new-flows), plus [ha] (priority 200, the active
unit) and [sync] with unit B as its peer. B has the same services (the config digests match),
net_null ports that receive nothing (no-rx), idle back-off on, priority 100 (the standby): its
worker only applies what A replicates. The sync link is a veth pair between two network
namespaces this script creates (and removes, whatever happens). Both units start afresh for
every offered rate.

Per rate (tandem_gen --rate, new connections per second; "max": no limit): A's and B's
`sync status` (the ctl socket's sync.status, what `tandemctl --json sync status` prints, over one
kept-open connection) and their threads' CPU times (/proc/PID/task/TID/schedstat) are sampled
every --interval over the measured phase, then until A has every message acked (the drain).
Reported, per rate:

  offered/s     new connections tandem_gen sent per second (measured phase)
  created/s     A's conntrack/created per second
  records/s     A's send.records per second (records sent to B, first transmissions)
  applied/s     B's apply.created per second
  lag ms        A's lag.ms over the samples: median, p99, max (and lag.max_ms, A's own record)
  dropped, backpressure, retransmits
                A's send.ring_dropped (changes lost: the worker's ring to the sync thread was
                full), send.backpressure (the send window was full), send.retransmits
  sync CPU      the tandem-sync thread's CPU share and its CPU time per record (A: per record
                sent; B: per record received), and B's worker (it applies them) per record
  replicated    B's apply.created of A's conntrack/created once drained (warm-up included)

and how long A took, after the load, to have every message acked ("drained"); a unit that
reports lag with every message acked is flagged (STALE LAG). The CPUs each thread may run on
are printed: tandemd's own threads run on the CPUs no lcore uses (every CPU when the lcores
take them all); --sync-cpus moves the sync threads elsewhere for a comparison.

Usage: scripts/bench/sync.sh [--rates 10000,50000,100000,max] [--seconds 3] [--build build]
Needs root, a built tandemd, tandemctl and tests/bench/tandem_gen (with --rate). Every phase
is bounded in time and tandem_gen stops after a bounded count of frames; traffic stays on the
memif links and the veth pair this script creates. Exit status 0 when every rate was measured,
non-zero with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastpath  # noqa: E402  (its Bench: generator, tandemd config and start, events)
from benchlib import (REPO, load_average, median, percentile, require_root, stop,  # noqa: E402
                      telemetry, thread_affinity, thread_cpu, wait_for_ctl)
from fastpath import WARMUP_MAX_FRAMES, WARMUP_SECONDS, Bench, Failure  # noqa: E402
from tandemlab.lab import Lab, cleanup_stale, install_signal_handlers  # noqa: E402

LAB_PREFIX = "tsb"  # namespaces tsb<pid>-<tag>-a/-b; leftovers of a killed run are removed next time
KEY = "tandem-sync-bench-pre-shared-key-0123"
SYNC_NET = "10.199.250"  # the veth pair, inside the two namespaces: A .1/30, B .2/30
UNITS = {
    # unit: [unit] id, [ha] priority, sync link address, north and south port addresses
    "a": {"id": 1, "priority": 200, "sync": f"{SYNC_NET}.1", "north": fastpath.NORTH_ADDR,
          "south": fastpath.SOUTH_ADDR},
    "b": {"id": 2, "priority": 100, "sync": f"{SYNC_NET}.2", "north": "198.18.0.2/24",
          "south": "198.19.0.2/24"},
}
HA_PORT, SYNC_PORT = 8693, 8694
SYNC_THREAD = "tandem-sync"
IDLE_SECONDS = 1.0  # both units ready, no traffic: the threads' CPU at rest


def sub_once(text: str, pattern: str, repl: str) -> str:
    """Replace exactly one match of pattern in fastpath.py's configuration, or fail loudly."""
    new, n = re.subn(pattern, lambda _m: repl, text, count=0, flags=re.M)
    if n != 1:
        raise Failure(f"fastpath.py's tandemd configuration changed: {pattern!r} matches {n} times")
    return new


@dataclass
class Sample:
    t: float                     # time.monotonic() when the sample started
    phase: str                   # "warm" (before measure_start), "measure", "drain"
    a: dict                      # A's sync.status
    t_a: float                   # ... its answer came (the daemon may take a while: it waits for
    ctl_ms: float                #     the sync thread's lock); its round trip
    ping_ms: float               # round trip of log.level on A's ctl socket (no sync lock): the
                                 #     ctl thread's own delay
    b: dict                      # B's sync.status
    t_b: float
    cpu_a: dict                  # thread_cpu(A's pid), thread_cpu(B's pid), read at t_cpu
    cpu_b: dict
    t_cpu: float


@dataclass
class RateRun:
    rate: float                  # 0: no limit
    summary: dict                # tandem_gen's
    counters: dict               # A's /tandem/counters deltas over the measured phase
    samples: list[Sample]
    base_a: dict                 # A's and B's sync.status when the load starts (both ready)
    base_b: dict
    final_a: dict                # ... once drained
    final_b: dict
    created_total: int           # A's conntrack/created since start (warm-up included)
    drain_s: float | None        # measure_end -> every message of A acked; None: not within the bound
    threads: dict = field(default_factory=dict)  # unit -> {"sync": tid, "worker": tid, "affinity": ...}
    results: dict = field(default_factory=dict)


def sync_tid(pid: int) -> int | None:
    for tid, (name, _, _) in thread_cpu(pid).items():
        if name == SYNC_THREAD:
            return tid
    return None


class SyncBench(Bench):
    """fastpath.Bench with two units in namespaces: its generator, tandemd configuration and
    start, event readers and cleanup, with three hooks changed: the configuration (A: + [ha],
    [sync], [ctl]; B: its own id, addresses and net_null ports), spawn (through the Lab, in a
    namespace: tandemd in its unit's, tandem_gen, with --rate, in A's) and the working
    directory (the Lab's)."""

    def __init__(self, args: argparse.Namespace, lab: Lab):
        super().__init__(args)
        shutil.rmtree(self.work, ignore_errors=True)
        self.lab = lab
        self.work = lab.workdir
        self.tag = lab.id  # DPDK file prefixes <lab id>-...: Bench.cleanup and cleanup_stale find them
        self.ns = {u: lab.netns(u) for u in UNITS}
        link_a, link_b = lab.veth(self.ns["a"], self.ns["b"], "sync0", "sync0")
        lab.addr(self.ns["a"], link_a, f"{UNITS['a']['sync']}/30")
        lab.addr(self.ns["b"], link_b, f"{UNITS['b']['sync']}/30")
        self.unit_of: dict[str, str] = {}        # file prefix -> unit
        self.rate: float = 0.0                   # tandem_gen --rate of the next generator
        self.tandemctl = Path(args.build) / "controlplane" / "tandemctl"

    def ctl_socket(self, unit: str) -> Path:
        return self.work / f"ctl-{unit}.sock"

    # --- the hooks ---------------------------------------------------------------------------

    def tandemd_config(self, sock_a: Path, sock_b: Path, capacity: int, prefix: str) -> Path:
        path = super().tandemd_config(sock_a, sock_b, capacity, prefix)
        unit = self.unit_of[prefix]
        me, peer = UNITS[unit], UNITS["b" if unit == "a" else "a"]
        text = path.read_text()
        text = sub_once(text, r"^level = .*$", 'level = "info"')
        if unit == "b":
            text = sub_once(text, r'^\[unit\]\nid = 1\nname = "bench"$', f'[unit]\nid = {me["id"]}\nname = "bench-b"')
            text = sub_once(text, r"^lcores = .*$", f'lcores = "{self.args.b_lcore}"')
            text = sub_once(text, r"^idle_backoff = false$", "idle_backoff = true")
            text = sub_once(text, r'^device = "net_memif0,.*$', 'device = "net_null0,no-rx=1"')
            text = sub_once(text, r'^device = "net_memif1,.*$', 'device = "net_null1,no-rx=1"')
            text = sub_once(text, rf'^address = "{re.escape(fastpath.NORTH_ADDR)}"$', f'address = "{me["north"]}"')
            text = sub_once(text, rf'^address = "{re.escape(fastpath.SOUTH_ADDR)}"$', f'address = "{me["south"]}"')
        text += f"""
[ha]
priority = {me['priority']}
key = "{KEY}"
sync_listen = "{me['sync']}:{HA_PORT}"
sync_peer = "{peer['sync']}:{HA_PORT}"
data_port = "north0"
data_peer = "{peer['north'].split('/')[0]}"

[sync]
listen = "{me['sync']}:{SYNC_PORT}"
peer = "{peer['sync']}:{SYNC_PORT}"

[ctl]
socket = "{self.ctl_socket(unit)}"
"""
        path.write_text(text)
        return path

    def spawn(self, cmd: list[str], log: Path):
        if cmd[0] == str(self.tandemd):
            ns = self.ns[self.unit_of[Path(cmd[-1]).stem]]
        else:
            # memif's control socket is abstract (per network namespace): the generator lives
            # in A's namespace
            ns = self.ns["a"]
            if cmd[0] == str(self.gen) and self.rate > 0:
                cmd = [*cmd, "--rate", f"{self.rate:g}"]
        p = self.lab.spawn(ns, cmd, Path(log).stem).proc
        self.procs.append(p)
        return p

    # --- one rate ----------------------------------------------------------------------------

    def wait_ctl(self, ctl, what: str, ok, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            st = ctl.call(what)
            if ok(st):
                return st
            if time.monotonic() >= deadline:
                raise Failure(f"{what}: not as expected after {timeout:.0f}s: {json.dumps(st)[:2000]}")
            time.sleep(0.1)

    def start_unit(self, unit: str, sock_a: Path, sock_b: Path):
        prefix = f"{self.tag}-{unit}{self.seq}"
        self.unit_of[prefix] = unit
        self.ctl_socket(unit).unlink(missing_ok=True)
        p = self.start_tandemd(sock_a, sock_b, self.args.capacity, prefix)
        self.wait_tandemd_ready(prefix, p)
        return p, prefix, wait_for_ctl(self.ctl_socket(unit), timeout=30, proc=p)

    def measure(self, rate: float) -> RateRun:
        self.rate = rate
        sock_a, sock_b = self.sockets()
        gen_prefix = f"{self.tag}-gen{self.seq}"
        # Stop before either table fills (B holds all of A's): beyond that A forwards statelessly.
        count = self.args.capacity - WARMUP_MAX_FRAMES - 65536
        go = self.work / f"go{self.seq}"
        ctls = []
        gen, log = self.start_gen(sock_a, sock_b, "new-flows", count, gen_prefix, go)
        try:
            a, a_prefix, ctl_a = self.start_unit("a", sock_a, sock_b)
            ctls.append(ctl_a)
            self.wait_event(gen, log, "links_up", 40)
            # A alone becomes active once it has heard nobody for its dead interval; B, started
            # next with a lower priority, becomes the standby.
            self.wait_ctl(ctl_a, "ha.status", lambda s: s["groups"][0]["role"] == "active", 15)
            b, b_prefix, ctl_b = self.start_unit("b", sock_a, sock_b)
            ctls.append(ctl_b)
            self.wait_ctl(ctl_b, "ha.status", lambda s: s["groups"][0]["role"] == "standby", 15)
            # Each holds the other's (empty) table: the bulk resyncs are done, nothing pending.
            for ctl in (ctl_a, ctl_b):
                self.wait_ctl(ctl, "sync.status", lambda s: s["ready"] and s["peer"]["heard"], 20)
            threads = {}
            for unit, p in (("a", a), ("b", b)):
                tid = sync_tid(p.pid)
                if tid is None:
                    raise Failure(f"unit {unit}: no thread named {SYNC_THREAD!r} in /proc/{p.pid}/task: "
                                  "add pthread_setname_np(thread_.native_handle(), \"tandem-sync\") "
                                  "after the thread starts in SyncService::start() (controlplane/sync_service.cpp)")
                if self.args.sync_cpus:
                    os.sched_setaffinity(tid, self.args.sync_cpus)
                # Worker 0 runs on the main thread (tandemd.cpp: lcore_main on the main lcore).
                threads[unit] = {"sync": tid, "worker": p.pid,
                                 "affinity": {f"{name} ({t})": thread_affinity(p.pid, t)
                                              for t, (name, _, _) in sorted(thread_cpu(p.pid).items())}}
            # The sync threads' CPU with both units idle (the loop wakes every millisecond).
            c0 = {u: thread_cpu(p.pid) for u, p in (("a", a), ("b", b))}
            t0 = time.monotonic()
            time.sleep(IDLE_SECONDS)
            c1 = {u: thread_cpu(p.pid) for u, p in (("a", a), ("b", b))}
            idle_dt = time.monotonic() - t0
            for u in ("a", "b"):
                for role in ("sync", "worker"):
                    threads[u][f"idle_{role}_cpu"] = cpu_delta(c0[u], c1[u], threads[u][role])[0] / 1e9 / idle_dt
            base_a, base_b = ctl_a.call("sync.status"), ctl_b.call("sync.status")
            go.touch()
            self.wait_event(gen, log, "warmup_done", WARMUP_SECONDS + 10)
            # The quiet second: A's conntrack figures are published every 200 ms.
            time.sleep(0.3)
            before = telemetry("/tandem/counters", a_prefix)
            if any(e["event"] == "measure_start" for e in self.gen_events(log)):
                raise Failure("A's counters were read too late (machine overloaded?)")
            samples, summary, drain_s = self.sample(gen, log, ctl_a, ctl_b, a, b)
            after = telemetry("/tandem/counters", a_prefix)
            for unit, p in (("a", a), ("b", b)):
                if p.poll() is not None:
                    raise Failure(f"unit {unit} exited ({p.returncode}) during the measurement")
            final_a, final_b = ctl_a.call("sync.status"), ctl_b.call("sync.status")
            self.check_tandemctl(final_a)
        finally:
            for c in ctls:
                c.close()
            stop(gen)
            for p in self.procs:
                stop(p)
            self.procs.clear()
            for s in (sock_a, sock_b):
                s.unlink(missing_ok=True)
        counters = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
        return RateRun(rate, summary, counters, samples, base_a, base_b, final_a, final_b,
                       int(after.get("conntrack/created", 0)), drain_s, threads)

    def check_tandemctl(self, seen: dict) -> None:
        """The sampler speaks the ctl protocol itself; once per rate, `tandemctl --json sync
        status` must show the same layout (and, the load being over, the same records sent)."""
        cp = subprocess.run([str(self.tandemctl), "--socket", str(self.ctl_socket("a")), "--json", "sync", "status"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
        if cp.returncode != 0:
            raise Failure(f"tandemctl sync status: exit {cp.returncode}: {cp.stderr.strip()}")
        st = json.loads(cp.stdout)
        if set(st) != set(seen) or st["send"]["records"] != seen["send"]["records"]:
            raise Failure(f"tandemctl --json sync status differs from the ctl socket's sync.status: {cp.stdout[:1000]}")

    def sample(self, gen, log: Path, ctl_a, ctl_b, a, b) -> tuple[list[Sample], dict, float | None]:
        """Samples every --interval from now to the end of the generator's measured phase, then
        until A has nothing in flight (every sequence sent acked), its workers hand it nothing
        new and B's apply counts stand still, three samples in a row (at most --drain-seconds).
        Not lag.entries == 0: A's lag bookkeeping can keep one record unacked forever (see
        stale_lag in figures())."""
        interval = self.args.interval
        samples: list[Sample] = []
        deadline = time.monotonic() + WARMUP_SECONDS + self.args.seconds + 15
        summary = None
        end_at = drain_s = None
        stable = 0
        next_t = time.monotonic()
        while True:
            events = self.gen_events(log)
            names = {e["event"] for e in events}
            if end_at is None and "measure_end" in names:
                end_at = time.monotonic()
                deadline = end_at + self.args.drain_seconds
            if summary is None and "summary" in names:
                summary = next(e for e in events if e["event"] == "summary")
            phase = "drain" if end_at is not None else "measure" if "measure_start" in names else "warm"
            t = time.monotonic()
            st_a = ctl_a.call("sync.status")
            t_a = time.monotonic()
            ctl_a.call("log.level")
            t_ping = time.monotonic()
            st_b = ctl_b.call("sync.status")
            t_b = t_cpu = time.monotonic()
            s = Sample(t, phase, st_a, t_a, (t_a - t) * 1000, (t_ping - t_a) * 1000, st_b, t_b,
                       thread_cpu(a.pid), thread_cpu(b.pid), t_cpu)
            samples.append(s)
            if phase == "drain" and samples[-2].phase == "drain":
                prev = samples[-2]
                send = s.a["send"]
                quiet = (send["in_flight"] == 0 and send["acked"] == send["sequence"]
                         and prev.b["apply"] == s.b["apply"] and prev.a["send"]["changes"] == send["changes"])
                stable = stable + 1 if quiet else 0
                if stable >= 3 and summary is not None:
                    drain_s = samples[-4].t - end_at
                    break
            if t >= deadline:
                if summary is None:
                    if gen.poll() is not None:
                        raise Failure(f"tandem_gen exited ({gen.returncode}) before its summary; log {log}")
                    raise Failure(f"tandem_gen: no summary in time; log {log}")
                break  # not drained within --drain-seconds: reported as such
            next_t += interval
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(0.3)  # A's /tandem/counters are published every 200 ms
        return samples, summary, drain_s


# --- figures --------------------------------------------------------------------------------

def cpu_delta(s0: dict, s1: dict, tid: int) -> tuple[float, float]:
    """(ns on a CPU, ns waiting for one) of thread tid between two thread_cpu() readings."""
    if tid not in s0 or tid not in s1:
        return 0.0, 0.0
    return float(s1[tid][1] - s0[tid][1]), float(s1[tid][2] - s0[tid][2])


def figures(r: RateRun) -> dict:
    m = [s for s in r.samples if s.phase == "measure"]
    if len(m) < 3:
        slow = sorted((round(s.ctl_ms), s.phase) for s in r.samples)[-5:]
        raise Failure(f"rate {rate_label(r.rate)}: only {len(m)} samples in the {r.summary['seconds']:.2f} s measured "
                      f"phase, {len(r.samples)} in all; slowest sync.status round trips on A (ms, phase): {slow}")
    first, last = m[0], m[-1]
    dt_a, dt_b, dt_cpu = last.t_a - first.t_a, last.t_b - first.t_b, last.t_cpu - first.t_cpu
    seconds = float(r.summary["seconds"])

    def d(side: str, *path: str) -> int:
        v0, v1 = getattr(first, side), getattr(last, side)
        for p in path:
            v0, v1 = v0[p], v1[p]
        return int(v1) - int(v0)

    lags = [float(s.a["lag"]["ms"]) for s in m]
    sent = d("a", "send", "records")
    received = d("b", "receive", "records")
    out = {
        "offered_per_s": r.summary["tx"] / seconds,
        "created_per_s": r.counters.get("conntrack/created", 0) / seconds,
        "forwarded_per_s": r.summary["rx"] / seconds,
        "records_per_s": sent / dt_a,
        "applied_per_s": d("b", "apply", "created") / dt_b,
        "lag_ms_median": median(lags),
        "lag_ms_p99": percentile(lags, 99),
        "lag_ms_max": max(lags),
        "lag_entries_max": max(int(s.a["lag"]["entries"]) for s in m),
        "lag_max_ms_daemon": int(r.final_a["lag"]["max_ms"]),
        "ring_dropped": d("a", "send", "ring_dropped"),
        "backpressure": d("a", "send", "backpressure"),
        "retransmits": d("a", "send", "retransmits"),
        "gave_up": d("a", "send", "gave_up"),
        "samples": len(m),
        "window_s": dt_a,
        "ctl_ms_p99": percentile([s.ctl_ms for s in m], 99),
        "ctl_ms_max": max(s.ctl_ms for s in m),
        "ping_ms_p99": percentile([s.ping_ms for s in m], 99),
        "ping_ms_max": max(s.ping_ms for s in m),
        "gen_seconds": seconds,
        "table_full": r.counters.get("conntrack/insert_failed_full", 0),
    }
    # CPU per record: the thread's CPU share (its own window) over the records per second.
    for unit, side, per_s in (("a", "cpu_a", sent / dt_a), ("b", "cpu_b", received / dt_b)):
        for role in ("sync", "worker"):
            run_ns, wait_ns = cpu_delta(getattr(first, side), getattr(last, side), r.threads[unit][role])
            share, idle = run_ns / 1e9 / dt_cpu, r.threads[unit][f"idle_{role}_cpu"]
            out[f"{unit}_{role}_cpu"] = share
            out[f"{unit}_{role}_wait"] = wait_ns / 1e9 / dt_cpu
            out[f"{unit}_{role}_idle_cpu"] = idle
            out[f"{unit}_{role}_us_per_record"] = share * 1e6 / per_s if per_s else None
            # what the records added to the idle loop's cost
            out[f"{unit}_{role}_marginal_us_per_record"] = (share - idle) * 1e6 / per_s if per_s else None
    # Totals from the start of the load (warm-up included) until drained: everything A created
    # against what B applied; and what the units' start (before the load) left in the counters.
    def total(side: str, section: str, name: str) -> int:
        final, base = getattr(r, f"final_{side}")[section], getattr(r, f"base_{side}")[section]
        return int(final[name]) - int(base[name])

    out.update({
        "a_created_total": r.created_total,
        "a_changes_total": total("a", "send", "changes"),
        "a_records_total": total("a", "send", "records"),
        "a_ring_dropped_total": total("a", "send", "ring_dropped"),
        "a_backpressure_total": total("a", "send", "backpressure"),
        "a_retransmits_total": total("a", "send", "retransmits"),
        "a_gave_up_total": total("a", "send", "gave_up"),
        "a_lag_entries_final": int(r.final_a["lag"]["entries"]),
        "a_lag_ms_final": int(r.final_a["lag"]["ms"]),
        "a_in_flight_final": int(r.final_a["send"]["in_flight"]),
        "a_unacked_final": int(r.final_a["send"]["sequence"]) - int(r.final_a["send"]["acked"]),
        "b_received_total": total("b", "receive", "records"),
        "b_apply_total": {k: total("b", "apply", k) for k, v in r.final_b["apply"].items()
                          if isinstance(v, int) and total("b", "apply", k)},
        "b_skipped_total": total("b", "receive", "skipped"),
        "drain_s": r.drain_s,
        "a_at_start": {k: int(r.base_a["send"][k]) for k in ("messages", "retransmits", "gave_up")},
    })
    out["replicated_share"] = out["b_apply_total"].get("created", 0) / max(r.created_total, 1)
    # Every sequence acked, nothing in flight, yet A still counts records unacked: its lag figures
    # (lag.entries, lag.ms, and so lag.max_ms) are stale and lag.ms keeps growing.
    out["stale_lag"] = (out["a_lag_entries_final"] > 0 and out["a_in_flight_final"] == 0
                        and out["a_unacked_final"] == 0)
    return out


def drained(f: dict) -> str:
    return ("not drained within --drain-seconds" if f["drain_s"] is None
            else f"drained {f['drain_s']:.2f} s after the load")


def rate_label(rate: float) -> str:
    return "max" if rate <= 0 else f"{rate / 1000:g}k"


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def us(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def print_table(runs: list[RateRun]) -> None:
    rows = [("offered", "created/s", "records/s", "applied/s", "lag ms med/p99/max", "lag entr max",
             "ring drop", "backpr", "retx", "A sync CPU (us/rec all/marg)", "B sync CPU (us/rec all/marg)",
             "B worker us/rec", "A ctl ms p99/max (ping)",
             "replicated")]
    for r in runs:
        f = r.results
        rows.append((
            f"{rate_label(r.rate)} ({f['offered_per_s'] / 1e3:.1f}k)",
            f"{f['created_per_s'] / 1e3:.1f}k",
            f"{f['records_per_s'] / 1e3:.1f}k",
            f"{f['applied_per_s'] / 1e3:.1f}k",
            f"{f['lag_ms_median']:g} / {f['lag_ms_p99']:g} / {f['lag_ms_max']:g}",
            f"{f['lag_entries_max']}",
            f"{f['ring_dropped']}",
            f"{f['backpressure']}",
            f"{f['retransmits']}",
            f"{pct(f['a_sync_cpu'])} ({us(f['a_sync_us_per_record'])}/{us(f['a_sync_marginal_us_per_record'])})",
            f"{pct(f['b_sync_cpu'])} ({us(f['b_sync_us_per_record'])}/{us(f['b_sync_marginal_us_per_record'])})",
            us(f["b_worker_us_per_record"]),
            f"{f['ctl_ms_p99']:.0f}/{f['ctl_ms_max']:.0f} ({f['ping_ms_p99']:.0f}/{f['ping_ms_max']:.0f})",
            f"{100 * f['replicated_share']:.2f}%",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for c, w in zip(row, widths)))


def cpu_list(text: str) -> set[int]:
    """'0', '0-1', '0,1' -> {0, 1}"""
    cpus: set[int] = set()
    for item in text.split(","):
        lo, _, hi = item.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    if not cpus or not cpus <= set(range(os.cpu_count() or 1)):
        raise argparse.ArgumentTypeError(f"CPUs of this machine: 0-{(os.cpu_count() or 1) - 1}")
    return cpus


def parse_rates(text: str) -> list[float]:
    rates = []
    for item in text.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "max":
            rates.append(0.0)
            continue
        mult = 1000 if item.endswith("k") else 1
        value = float(item.rstrip("k")) * mult
        if value <= 0:
            raise ValueError(item)
        rates.append(value)
    if not rates:
        raise ValueError(text)
    return rates


def run(args: argparse.Namespace, rates: list[float], lab: Lab) -> list[RateRun]:
    bench = SyncBench(args, lab)
    try:
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        print(f"load average at start: {load_average()} (2 cores: the figures assume an idle machine)",
              flush=True)
        runs = []
        for rate in rates:
            r = bench.measure(rate)
            r.results = figures(r)
            runs.append(r)
            f = r.results
            print(f"  {rate_label(rate):>5}: offered {f['offered_per_s']:.0f}/s, created {f['created_per_s']:.0f}/s, "
                  f"replicated {f['records_per_s']:.0f} records/s, B applied {f['applied_per_s']:.0f}/s, "
                  f"lag {f['lag_ms_median']:g}/{f['lag_ms_p99']:g}/{f['lag_ms_max']:g} ms, "
                  f"dropped {f['ring_dropped']}, backpressure {f['backpressure']}; {drained(f)}", flush=True)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        busy = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
        print(f"load average at end: {load_average()}; this driver used {pct(busy / (time.monotonic() - t0))} "
              "of a core")
        return runs
    finally:
        bench.cleanup()


def report(args: argparse.Namespace, runs: list[RateRun]) -> None:
    print()
    th = runs[0].threads
    print(f"new TCP connections (SYN of a new 5-tuple), {args.seconds:g} s measured per rate, lag sampled every "
          f"{args.interval * 1000:g} ms; A: worker lcore 1 (idle back-off off), tandem_gen lcore 0, B: lcore "
          f"{args.b_lcore} (idle back-off on); sync over a veth pair; capacity {args.capacity} per unit")
    for u in ("a", "b"):
        print(f"CPUs allowed, unit {u.upper()}'s threads (worker 0 is the main thread, tid = pid): "
              + ", ".join(f"{k} {v}" for k, v in th[u]["affinity"].items()))
    if args.sync_cpus:
        print(f"(the {SYNC_THREAD} threads were moved to CPUs {sorted(args.sync_cpus)} by this script, --sync-cpus)")
    print()
    print_table(runs)
    print()
    print("CPU: a thread's share of one core over the measured phase; us/rec: its CPU time per record sent (A) "
          "or received (B), all of it / what the records added to the idle loop (marg.; B's worker: all of it, "
          "idle back-off included); waited: runnable but not on a CPU (schedstat). A ctl ms: round trip of "
          "sync.status on A's ctl socket (it waits for the sync thread's lock; ping: log.level, which does not):")
    for r in runs:
        f = r.results
        print(f"  {rate_label(r.rate):>5}: A {SYNC_THREAD} ran {pct(f['a_sync_cpu'])} (idle {pct(f['a_sync_idle_cpu'])}), "
              f"waited {pct(f['a_sync_wait'])}; A worker ran {pct(f['a_worker_cpu'])}, waited {pct(f['a_worker_wait'])}; "
              f"B {SYNC_THREAD} ran {pct(f['b_sync_cpu'])} (idle {pct(f['b_sync_idle_cpu'])}), waited "
              f"{pct(f['b_sync_wait'])}; B worker ran {pct(f['b_worker_cpu'])} (idle {pct(f['b_worker_idle_cpu'])}), "
              f"waited {pct(f['b_worker_wait'])}")
    print("totals from the start of the load (warm-up included) until drained:")
    for r in runs:
        f = r.results
        print(f"  {rate_label(r.rate):>5}: A created {f['a_created_total']}, handed to sync {f['a_changes_total']}, "
              f"sent {f['a_records_total']} records (ring dropped {f['a_ring_dropped_total']}, backpressure "
              f"{f['a_backpressure_total']}, retransmits {f['a_retransmits_total']}, gave up {f['a_gave_up_total']}, "
              f"messages unacked at the end {f['a_unacked_final']}); B received {f['b_received_total']}, "
              f"applied {f['b_apply_total']}, skipped {f['b_skipped_total']}; {drained(f)}; "
              f"A's lag.max_ms since start {f['lag_max_ms_daemon']}; before the load (units starting): "
              f"A sent {f['a_at_start']['messages']} messages, retransmits {f['a_at_start']['retransmits']}, "
              f"gave up {f['a_at_start']['gave_up']}")
    for r in runs:
        f = r.results
        if f["stale_lag"]:
            print(f"  {rate_label(r.rate):>5}: STALE LAG on A: every message acked (sequence == acked, nothing in "
                  f"flight), yet lag.entries {f['a_lag_entries_final']}, lag.ms {f['a_lag_ms_final']} and growing "
                  f"(lag.max_ms {f['lag_max_ms_daemon']})")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args),
            "runs": [{"rate": r.rate, "results": r.results, "summary": r.summary, "counters": r.counters,
                      "threads": r.threads, "base_a": r.base_a, "base_b": r.base_b,
                      "final_a": r.final_a, "final_b": r.final_b,
                      "samples": [{"t": s.t, "phase": s.phase, "a_lag": s.a["lag"], "a_send": s.a["send"],
                                   "b_apply": s.b["apply"], "b_receive": s.b["receive"]} for s in r.samples]}
                     for r in runs]}, indent=1, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="10000,50000,100000,max",
                    help="offered new connections per second, comma-separated (10k style allowed; "
                         "max: no limit; default 10000,50000,100000,max)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measured phase per rate (default 3)")
    ap.add_argument("--interval", type=float, default=0.05,
                    help="sampling period of sync status and thread CPU (default 0.05 s)")
    ap.add_argument("--drain-seconds", type=float, default=10.0,
                    help="after the load, wait at most this long for A to have nothing in flight (default 10)")
    ap.add_argument("--capacity", type=int, default=1 << 22,
                    help="[conntrack] capacity of both units; the generator stops before A's table "
                         "fills (default 4194304 = 512 MiB per unit at 128 B)")
    ap.add_argument("--b-lcore", default="0",
                    help="EAL lcore of unit B (A's worker is lcore 1, tandem_gen lcore 0; default 0)")
    ap.add_argument("--sync-cpus", type=cpu_list, default=None,
                    help="move both units' sync threads to these CPUs (e.g. 0 or 0-1) once started, "
                         "to compare with where tandemd leaves them (default: leave them)")
    ap.add_argument("--build", default=str(REPO / "build"), help="meson build directory (default build/)")
    ap.add_argument("--json", help="also write every rate's raw figures and samples to this file")
    args = ap.parse_args()
    try:
        rates = parse_rates(args.rates)
    except ValueError:
        ap.error("--rates: positive numbers (e.g. 10000 or 10k) or max, comma-separated")
    if not 1 <= args.seconds <= 60 or not 0.01 <= args.interval <= 1 or not 1 <= args.drain_seconds <= 60:
        ap.error("--seconds 1..60, --interval 0.01..1, --drain-seconds 1..60")
    if args.capacity < 2 * WARMUP_MAX_FRAMES + 65536:
        ap.error(f"--capacity must be at least {2 * WARMUP_MAX_FRAMES + 65536}")
    args.udp, args.flows = False, 1  # what fastpath.Bench reads of its own options
    require_root()

    # SIGTERM and SIGHUP become SystemExit, SIGINT KeyboardInterrupt: the Lab's with block stops
    # every process and removes the namespaces either way.
    install_signal_handlers()
    cleanup_stale(LAB_PREFIX)
    with Lab(prefix=LAB_PREFIX, keep_workdir=False) as lab:
        try:
            runs = run(args, rates, lab)
        except BaseException as e:
            # The Lab's directory goes with it (and cleanup_stale removes a kept one): a copy.
            logs = Path(tempfile.mkdtemp(prefix=f"tandem-sync-bench-{lab.id}-"))
            shutil.copytree(lab.workdir, logs, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.sock", "go*"))
            failed = isinstance(e, Exception)
            print(f"sync: {f'FAILED: {e}' if failed else 'interrupted'}; logs in {logs}", file=sys.stderr)
            if failed:
                return 1
            raise
    report(args, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
