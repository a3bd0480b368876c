#!/usr/bin/python3
"""Load-balancing fast path: tandemd vs dpdk-testpmd io forwarding, same memif vdevs, same run.

    tandem_gen (lcore 0)                       device under test (lcore 1)
      port 0, memif server A  ---- frames --->  north port (client of A)
      port 1, memif server B  <--- frames ----  south port (client of B)

tests/bench/tandem_gen sends 64-byte frames to a VIP and counts what comes back. The device
under test is first tandemd (one worker, idle back-off off, a nat service with four backends on
the south port's subnet: each frame is parsed, looked up in the connection table, DNATed and
sent to the backend's MAC, which tandem_gen's port B answers ARP for), then
`dpdk-testpmd --forward-mode=io` on the same two vdevs (receive, send unchanged: the floor of
any DPDK forwarder). Both are measured the same way: frames per second back at the sink.

Two traffic kinds, each measured against both devices:

  established  --flows fixed 5-tuples cycled over (TCP ACK; --udp for UDP), learnt during a
               warm-up at a gentle pace, so every measured frame hits the connection table
  new-flows    every frame a TCP SYN with a 5-tuple never sent before: frames forwarded per
               second = new connections per second; conntrack/created counts them. The
               generator stops before the table (--new-flows-capacity) fills

Devices alternate for --repeat rounds; the median ratio is reported. Memory per connection is
measured, not assumed: two idle tandemd processes with different [conntrack] capacity, the
difference of their resident sizes divided by the difference of capacities.

Usage: scripts/bench/fastpath.sh [--seconds 5] [--repeat 3] [--flows 65536] [--build build]
Needs root, a built tandemd and tests/bench/tandem_gen. Everything is bounded in time; processes
and memif sockets are cleaned up on exit and on Ctrl-C. Exit status 0 when every run completed
(whether or not the targets were met), non-zero with a message otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (EAL_COMMON, REPO, RUNTIME_ROOT, TelemetryError, load_average, median,  # noqa: E402
                      require_root, start, stop, telemetry, vm_rss_bytes, wait_for_port)

GEN_MAC_A = "02:00:00:00:0a:01"
GEN_MAC_B = "02:00:00:00:0b:01"
DUT_MAC_NORTH = "02:00:00:00:01:01"
DUT_MAC_SOUTH = "02:00:00:00:02:01"
NORTH_ADDR = "198.18.0.1/24"
SOUTH_ADDR = "198.19.0.1/24"
VIP = "203.0.113.10"
VIP_PORT = 80
BACKENDS = ["198.19.0.11", "198.19.0.12", "198.19.0.13", "198.19.0.14"]
BACKEND_PORT = 8080
WARMUP_SECONDS = 1.0
WARMUP_MAX_FRAMES = 400_000  # tandem_gen's warm-up pace: one burst of 32 per 100 us at most

# Targets of the issue.
TARGET_RATIO = 0.5
TARGET_NEW_PER_S = 1_000_000
TARGET_BYTES_PER_CONN = 256


class Failure(RuntimeError):
    pass


@dataclass
class Run:
    """One device under test, one traffic kind."""
    dut: str
    kind: str
    summary: dict
    counters: dict = field(default_factory=dict)   # tandemd only: deltas over the measured phase

    @property
    def pps(self) -> float:
        return float(self.summary["rx_pps"])

    @property
    def backpressure(self) -> float:
        """Share of the generator's bursts the device did not take whole: near 1, the device was
        the bottleneck; near 0, the generator was (the ratio then understates the gap)."""
        return self.summary["tx_short_bursts"] / max(self.summary["tx_bursts"], 1)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        build = Path(args.build)
        self.tandemd = build / "controlplane" / "tandemd"
        self.gen = build / "tests" / "bench" / "tandem_gen"
        for exe in (self.tandemd, self.gen):
            if not exe.exists():
                raise Failure(f"{exe} not found: build first (meson compile -C {build})")
        self.work = Path(tempfile.mkdtemp(prefix="tandem-fastpath-"))
        self.tag = f"tfp{os.getpid()}"
        self.procs: list[subprocess.Popen] = []
        self.seq = 0

    # --- processes ---------------------------------------------------------------------------

    def spawn(self, cmd: list[str], log: Path) -> subprocess.Popen:
        p = start(cmd, log)
        self.procs.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.procs:
            stop(p)
        self.procs.clear()
        for sock in self.work.glob("*.sock"):
            sock.unlink(missing_ok=True)
        # DPDK's runtime directories of this run's processes (/var/run/dpdk/<file prefix>)
        for d in RUNTIME_ROOT.glob(f"{self.tag}-*"):
            shutil.rmtree(d, ignore_errors=True)

    def sockets(self) -> tuple[Path, Path]:
        """Fresh socket paths per measurement: a memif server does not reliably take a second
        client, so every device under test gets its own generator and sockets."""
        self.seq += 1
        return self.work / f"a{self.seq}.sock", self.work / f"b{self.seq}.sock"

    def tandemd_config(self, sock_a: Path, sock_b: Path, capacity: int, prefix: str) -> Path:
        backends = "".join(f"""
[[service.backend]]
address = "{b}"
port = {BACKEND_PORT}
""" for b in BACKENDS)
        cfg = self.work / f"{prefix}.toml"
        cfg.write_text(f"""[unit]
id = 1
name = "bench"
[eal]
lcores = "1"
memory_mb = 512
no_huge = true
file_prefix = "{prefix}"
[worker]
burst_size = 32
idle_backoff = false
[log]
level = "warn"
[[port]]
name = "north0"
role = "north"
device = "net_memif0,role=client,socket={sock_a},id=0,mac={DUT_MAC_NORTH}"
address = "{NORTH_ADDR}"
[[port]]
name = "south0"
role = "south"
device = "net_memif1,role=client,socket={sock_b},id=0,mac={DUT_MAC_SOUTH}"
address = "{SOUTH_ADDR}"
[conntrack]
capacity = {capacity}
[[service]]
name = "bench"
vip = "{VIP}"
protocol = "{'udp' if self.args.udp else 'tcp'}"
port = {VIP_PORT}
mode = "nat"
{backends}""")
        return cfg

    def start_tandemd(self, sock_a: Path, sock_b: Path, capacity: int, prefix: str) -> subprocess.Popen:
        cfg = self.tandemd_config(sock_a, sock_b, capacity, prefix)
        check = subprocess.run([str(self.tandemd), "--check-config", str(cfg)], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL, timeout=30)
        if check.returncode != 0:
            raise Failure(f"tandemd rejects the benchmark's configuration:\n{check.stdout}{check.stderr}")
        p = self.spawn([str(self.tandemd), "--config", str(cfg)], self.work / f"{prefix}.log")
        wait_for_port(prefix, timeout=60, proc=p)
        return p

    def start_testpmd(self, sock_a: Path, sock_b: Path, prefix: str) -> subprocess.Popen:
        # Forwarding lcore 1, beside tandem_gen on lcore 0; testpmd's main lcore 0 only sleeps.
        p = self.spawn(["dpdk-testpmd", "-l", "0,1", "--main-lcore", "0", *EAL_COMMON,
                        f"--file-prefix={prefix}",
                        f"--vdev=net_memif0,role=client,socket={sock_a},id=0,mac={DUT_MAC_NORTH}",
                        f"--vdev=net_memif1,role=client,socket={sock_b},id=0,mac={DUT_MAC_SOUTH}",
                        "--", "--no-mlockall", "--forward-mode=io", "--nb-cores=1", "--burst=32",
                        "--total-num-mbufs=16384", "-a",
                        # keeps testpmd running without stdin (it exits at EOF otherwise)
                        "--stats-period=1000"], self.work / f"{prefix}.log")
        wait_for_port(prefix, timeout=30, proc=p)
        return p

    def start_gen(self, sock_a: Path, sock_b: Path, kind: str, count: int | None, prefix: str,
                  go_file: Path, flows: int | None = None,
                  seconds: float | None = None) -> tuple[subprocess.Popen, Path]:
        traffic = (["--new-flows"] if kind == "new-flows"
                   else ["--established", str(flows or self.args.flows)])
        if kind != "new-flows" and self.args.udp:
            traffic.append("--udp")
        if count is not None:
            traffic += ["--count", str(count)]
        log = self.work / f"{prefix}.log"
        p = self.spawn([str(self.gen), "-l", "0", *EAL_COMMON, f"--file-prefix={prefix}",
                        f"--vdev=net_memif0,role=server,socket={sock_a},id=0,mac={GEN_MAC_A}",
                        f"--vdev=net_memif1,role=server,socket={sock_b},id=0,mac={GEN_MAC_B}",
                        "--", "--dut-mac", DUT_MAC_NORTH, "--vip", VIP, "--vip-port", str(VIP_PORT),
                        "--arp-for", ",".join(BACKENDS), *traffic,
                        "--seconds", str(seconds or self.args.seconds),
                        "--warmup-seconds", str(WARMUP_SECONDS), "--link-timeout", "30",
                        # links stay up after the summary until SIGTERM: the DUT's counters are
                        # read first
                        "--linger-seconds", "60", "--go-file", str(go_file)], log)
        wait_for_port(prefix, timeout=30, proc=p)
        return p, log

    @staticmethod
    def wait_tandemd_ready(prefix: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
        """/tandem/counters answers once tandemd has built its workers (connection tables
        included), which may be well after its ports are up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise Failure(f"tandemd exited ({proc.returncode}) while starting")
            try:
                telemetry("/tandem/counters", prefix)
                return
            except TelemetryError:
                time.sleep(0.1)
        raise Failure(f"tandemd ({prefix}) not ready after {timeout:.0f}s")

    @staticmethod
    def gen_events(log: Path) -> list[dict]:
        events = []
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{\"event\""):
                events.append(json.loads(line))
        return events

    def wait_event(self, gen: subprocess.Popen, log: Path, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.gen_events(log):
                if e["event"] == name:
                    return e
            if gen.poll() is not None:
                raise Failure(f"tandem_gen exited ({gen.returncode}) before '{name}'; log {log}")
            time.sleep(0.02)
        raise Failure(f"tandem_gen: no '{name}' after {timeout:.0f}s; log {log}")

    # --- one measurement ---------------------------------------------------------------------

    def measure(self, dut: str, kind: str) -> Run:
        sock_a, sock_b = self.sockets()
        gen_prefix = f"{self.tag}-gen{self.seq}"
        dut_prefix = f"{self.tag}-{dut}{self.seq}"
        count = None
        if kind == "new-flows":
            # Stop before the connection table fills: beyond that tandemd forwards statelessly.
            count = self.args.new_flows_capacity - WARMUP_MAX_FRAMES - 65536
        go = self.work / f"go{self.seq}"
        gen, log = self.start_gen(sock_a, sock_b, kind, count, gen_prefix, go)
        try:
            if dut == "tandemd":
                capacity = (self.args.new_flows_capacity if kind == "new-flows"
                            else self.args.established_capacity)
                proc = self.start_tandemd(sock_a, sock_b, capacity, dut_prefix)
            else:
                proc = self.start_testpmd(sock_a, sock_b, dut_prefix)
            self.wait_event(gen, log, "links_up", 40)
            if dut == "tandemd":
                self.wait_tandemd_ready(dut_prefix, proc)
            go.touch()
            self.wait_event(gen, log, "warmup_done", WARMUP_SECONDS + 10)
            before = {}
            if dut == "tandemd":
                # tandemd publishes conntrack figures every 200 ms: read them in the generator's
                # quiet second between warm-up and the measured phase
                time.sleep(0.3)
                before = telemetry("/tandem/counters", dut_prefix)
                if any(e["event"] == "measure_start" for e in self.gen_events(log)):
                    raise Failure("tandemd's counters were read too late (machine overloaded?)")
            summary = self.wait_event(gen, log, "summary", self.args.seconds + 15)
            if dut == "tandemd":
                time.sleep(0.3)  # the same 200 ms publication delay at the end
            after = telemetry("/tandem/counters", dut_prefix) if dut == "tandemd" else {}
            if proc.poll() is not None:
                raise Failure(f"{dut} exited ({proc.returncode}) during the measurement; log "
                              f"{self.work / (dut_prefix + '.log')}")
            stop(gen)
            if gen.returncode != 0:
                raise Failure(f"tandem_gen exited with status {gen.returncode}; log {log}")
        finally:
            stop(gen)
            if "proc" in locals():
                stop(proc)
            for s in (sock_a, sock_b):
                s.unlink(missing_ok=True)
        if summary["rx"] == 0:
            raise Failure(f"{dut}, {kind}: nothing came back to the sink; logs in {self.work}")
        deltas = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
        if dut == "tandemd":
            deltas["sink/not_translated"] = summary["rx_to_vip"]  # a nat service leaves none
        return Run(dut, kind, summary, deltas)

    # --- memory per connection ---------------------------------------------------------------

    def bytes_per_connection(self) -> tuple[float, int, int]:
        """Resident size of an idle tandemd at two [conntrack] capacities (the table is allocated
        and touched at start). -> (bytes per connection, small capacity, large capacity)"""
        small, large = 1 << 16, max(self.args.new_flows_capacity, self.args.established_capacity)
        rss = {}
        for cap in (small, large):
            # tandemd's memif ports need a server to start: a generator sending one flow
            sock_a, sock_b = self.sockets()
            go = self.work / f"go{self.seq}"
            gen, log = self.start_gen(sock_a, sock_b, "established", None, f"{self.tag}-gen{self.seq}",
                                      go, flows=1, seconds=1)
            try:
                prefix = f"{self.tag}-mem{self.seq}"
                p = self.start_tandemd(sock_a, sock_b, cap, prefix)
                self.wait_tandemd_ready(prefix, p)
                go.touch()
                self.wait_event(gen, log, "summary", 40)
                rss[cap] = vm_rss_bytes(p.pid)
                stop(p)
            finally:
                stop(gen)
        return (rss[large] - rss[small]) / (large - small), small, large


# --- report ---------------------------------------------------------------------------------

def fmt_mpps(pps: float) -> str:
    return f"{pps / 1e6:.3f}"


def nonzero_drops(c: dict) -> dict:
    return {k: v for k, v in c.items()
            if v and (k.startswith("drop/") or k.startswith("sink/") or k.endswith("/tx_dropped") or k == "conntrack/insert_failed_full"
                      or k == "conntrack/insert_failed_exists" or k == "handled/lb_stateless_forwarded")}


def round_line(kind: str, t: Run, io: Run) -> str:
    c = t.counters
    per_poll = c.get("north0/rx_packets", 0) / max(c.get("worker/busy_polls", 0), 1)
    extra = ""
    if kind == "new-flows":
        extra = (f", conntrack created/forwarded {c.get('conntrack/created', 0) / max(c.get('handled/lb_forwarded', 0), 1):.3f}")
    return (f"  {kind:11s} tandemd {fmt_mpps(t.pps)} Mpps ({per_poll:4.1f} frames/busy poll, "
            f"gen refused {t.backpressure:4.0%} of bursts), testpmd io {fmt_mpps(io.pps)} Mpps "
            f"(refused {io.backpressure:4.0%}), ratio {t.pps / io.pps:.3f}{extra}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured phase per run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds, devices alternating (default 3)")
    ap.add_argument("--flows", type=int, default=65536, help="established flows (default 65536)")
    ap.add_argument("--udp", action="store_true", help="established flows as UDP instead of TCP ACKs")
    ap.add_argument("--established-capacity", type=int, default=1 << 18,
                    help="tandemd's [conntrack] capacity for established flows (default 262144, "
                         "tandemd's default)")
    ap.add_argument("--new-flows-capacity", type=int, default=1 << 23,
                    help="tandemd's [conntrack] capacity for new flows: the generator stops "
                         "before it fills (default 8388608 = 1 GiB at 128 B)")
    ap.add_argument("--kinds", default="established,new-flows",
                    help="comma-separated: established, new-flows (default both)")
    ap.add_argument("--build", default=str(REPO / "build"), help="meson build directory (default build/)")
    ap.add_argument("--json", help="also write every run's raw figures to this file")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if any(k not in ("established", "new-flows") for k in kinds) or not kinds:
        ap.error("--kinds: established and/or new-flows")
    if args.seconds < 1 or args.repeat < 1 or args.flows < 1:
        ap.error("--seconds >= 1, --repeat >= 1, --flows >= 1")
    if args.new_flows_capacity < 2 * WARMUP_MAX_FRAMES + 65536:
        ap.error(f"--new-flows-capacity must be at least {2 * WARMUP_MAX_FRAMES + 65536}")
    if args.established_capacity < args.flows:
        ap.error("--established-capacity must be at least --flows")
    require_root()

    # SIGINT, SIGTERM and SIGHUP end the run through the finally below.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started with SIGINT ignored (a background job)

    bench = None
    ok = False
    try:
        bench = Bench(args)
        print(f"load average at start: {load_average()} (2 cores: the figures assume an idle machine)",
              flush=True)
        rounds: dict[str, list[tuple[Run, Run]]] = {k: [] for k in kinds}
        for r in range(args.repeat):
            print(f"round {r + 1}/{args.repeat}", flush=True)
            for kind in kinds:
                order = ["tandemd", "testpmd"] if r % 2 == 0 else ["testpmd", "tandemd"]
                runs = {dut: bench.measure(dut, kind) for dut in order}
                rounds[kind].append((runs["tandemd"], runs["testpmd"]))
                print(round_line(kind, runs["tandemd"], runs["testpmd"]), flush=True)
                drops = nonzero_drops(runs["tandemd"].counters)
                if drops:
                    print(f"    tandemd drops/anomalies during the measured phase: {drops}", flush=True)
        bpc, small, large = bench.bytes_per_connection()
        print(f"load average at end: {load_average()}")

        print()
        print(f"64-byte frames, {args.seconds:g} s measured per run, {args.repeat} rounds, "
              f"one worker core (lcore 1), generator on lcore 0, tandemd nat service with "
              f"{len(BACKENDS)} backends; conntrack capacity {args.established_capacity} (established), "
              f"{args.new_flows_capacity} (new flows)")
        results = {}
        for kind in kinds:
            pairs = rounds[kind]
            ratios = [t.pps / io.pps for t, io in pairs]
            t_med = median([t.pps for t, _ in pairs])
            io_med = median([io.pps for _, io in pairs])
            r_med = median(ratios)
            results[kind] = (t_med, io_med, r_med, min(ratios), max(ratios))
            label = (f"established ({args.flows} {'UDP' if args.udp else 'TCP'} flows)"
                     if kind == "established" else "new flows (TCP SYN, each a new connection)")
            print(f"{label}: tandemd {fmt_mpps(t_med)} Mpps, testpmd io {fmt_mpps(io_med)} Mpps, "
                  f"ratio median {r_med:.3f} (range {min(ratios):.3f} - {max(ratios):.3f})")
            if kind == "new-flows":
                created = sum(t.counters.get("conntrack/created", 0) for t, _ in pairs)
                forwarded = sum(t.counters.get("handled/lb_forwarded", 0) for t, _ in pairs)
                full = sum(t.counters.get("conntrack/insert_failed_full", 0) for t, _ in pairs)
                print(f"  conntrack/created {created} for {forwarded} frames forwarded "
                      f"({created / max(forwarded, 1):.3f} per frame); table full events {full}"
                      + (" (table filled: later flows were forwarded statelessly)" if full else ""))
        print(f"memory per connection (idle tandemd RSS, capacity {small} vs {large}): {bpc:.1f} bytes")

        print()
        print("targets:")
        if "established" in results:
            r = results["established"][2]
            print(f"  established-flow ratio to io forward >= {TARGET_RATIO}: {r:.3f} "
                  f"{'MET' if r >= TARGET_RATIO else 'NOT MET'}")
        if "new-flows" in results:
            n = results["new-flows"][0]
            print(f"  new connections/s per core >= {TARGET_NEW_PER_S / 1e6:g}M: {n / 1e6:.3f}M "
                  f"{'MET' if n >= TARGET_NEW_PER_S else 'NOT MET'}")
        print(f"  bytes per connection <= {TARGET_BYTES_PER_CONN}: {bpc:.0f} "
              f"{'MET' if bpc <= TARGET_BYTES_PER_CONN else 'NOT MET'}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "args": vars(args), "bytes_per_connection": bpc,
                "runs": {k: [{"tandemd": t.summary, "tandemd_counters": t.counters, "testpmd": io.summary}
                             for t, io in v] for k, v in rounds.items()}}, indent=1))
        ok = True
        return 0
    except Failure as e:
        print(f"fastpath: FAILED: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fastpath: interrupted", file=sys.stderr)
        return 130
    finally:
        if bench is not None:
            bench.cleanup()
            if ok:
                subprocess.run(["rm", "-rf", str(bench.work)], check=False)
            else:
                print(f"fastpath: logs kept in {bench.work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
