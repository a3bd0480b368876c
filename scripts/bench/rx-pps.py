#!/usr/bin/python3
"""Receive-path throughput: tandemd vs dpdk-testpmd rxonly, on the same memif link, same run.

A dpdk-testpmd txonly generator (memif server) sends 64-byte UDP frames addressed to the
receiver's MAC but not to its IP address. The receiver is first tandemd (each frame is received,
parsed, classified and dropped as ipv4_not_local: the fast path's cheapest complete verdict),
then dpdk-testpmd in rxonly mode (receive and free: the floor of any DPDK application). Both
are measured the same way, from the ethdev's ipackets counter over DPDK telemetry, so the ratio
says what Tandem's per-frame work costs on this machine.

The generator is one core copying into memif, so on a small machine it may be the limit: the
script prints tandemd's frames per busy poll (burst_size means every poll found a full ring,
i.e. tandemd was the bottleneck; less means it had time to spare). Receivers alternate for
--repeat rounds; the median ratio is reported.

Usage: scripts/bench/rx-pps.py [--seconds 5] [--repeat 3] [--build build]
Needs root (DPDK, /var/run/dpdk) and a built tandemd. Bounded: each phase runs --seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import EAL_COMMON, REPO, start, stop, telemetry, wait_for_port  # noqa: E402

RECEIVER_MAC = "02:00:00:00:00:02"


def start_generator(work: Path, sock: Path, prefix: str, procs: list) -> subprocess.Popen:
    """testpmd txonly as memif server: forwarding core 1, its (idle) main lcore 0. A fresh one
    per receiver: a memif server does not reliably take a second client after the first left."""
    gen = start(["dpdk-testpmd", "-l", "0,1", *EAL_COMMON, f"--file-prefix={prefix}",
                 f"--vdev=net_memif0,role=server,socket={sock},id=0", "--",
                 "--no-mlockall", "--forward-mode=txonly", "--txpkts=64",
                 "--tx-ip=198.18.0.2,198.18.0.99", f"--eth-peer=0,{RECEIVER_MAC}",
                 "--nb-cores=1", "--total-num-mbufs=16384", "-a",
                 # a stats period keeps testpmd running without stdin (it exits at EOF otherwise)
                 "--stats-period=1000"], work / "gen.log")
    procs.append(gen)
    wait_for_port(prefix, proc=gen)
    return gen


def start_receiver(cmd: list[str], log: Path, prefix: str, procs: list) -> subprocess.Popen:
    p = start(cmd, log)
    procs.append(p)
    wait_for_port(prefix, proc=p)
    return p


def ipackets(prefix: str) -> tuple[float, int]:
    stats = telemetry("/ethdev/stats,0", prefix)
    return time.monotonic(), int(stats["ipackets"])


def measure(prefix: str, seconds: float, tandem: bool = False) -> tuple[float, float]:
    """-> (received frames per second, tandemd's frames per busy poll or 0)"""
    time.sleep(1.0)  # let the link come up and the rings fill
    c0 = telemetry("/tandem/counters", prefix) if tandem else {}
    t0, p0 = ipackets(prefix)
    time.sleep(seconds)
    t1, p1 = ipackets(prefix)
    c1 = telemetry("/tandem/counters", prefix) if tandem else {}
    per_poll = 0.0
    if tandem:
        busy = c1["worker/busy_polls"] - c0["worker/busy_polls"]
        per_poll = (c1["bench0/rx_packets"] - c0["bench0/rx_packets"]) / max(busy, 1)
    return (p1 - p0) / (t1 - t0), per_poll


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", default=str(REPO / "build"))
    args = ap.parse_args()
    tandemd = Path(args.build) / "controlplane" / "tandemd"
    if not tandemd.exists():
        sys.exit(f"{tandemd} not found: build first")

    tag = f"tbench{os.getpid()}"
    work = Path(tempfile.mkdtemp(prefix="tandem-bench-"))
    sock = work / "memif.sock"
    memif_client = f"net_memif0,role=client,socket={sock},id=0,mac={RECEIVER_MAC}"
    procs: list[subprocess.Popen] = []
    try:
        # Receivers run on one core, lcore 0, beside the generator's idle main lcore.
        cfg = work / "tandemd.toml"
        cfg.write_text(f"""[unit]
id = 1
name = "bench"
[eal]
lcores = "0"
memory_mb = 512
no_huge = true
file_prefix = "{tag}-tandemd"
[worker]
burst_size = 32
idle_backoff = false
[log]
level = "warn"
[[port]]
name = "bench0"
device = "{memif_client}"
address = "198.18.0.1/24"
""")
        results = []
        for _ in range(args.repeat):
            gen = start_generator(work, sock, f"{tag}-gen", procs)
            td = start_receiver([str(tandemd), "--config", str(cfg)], work / "tandemd.log",
                                f"{tag}-tandemd", procs)
            tandem_pps, per_poll = measure(f"{tag}-tandemd", args.seconds, tandem=True)
            counters = telemetry("/tandem/counters", f"{tag}-tandemd")
            assert counters["drop/ipv4_not_local"] > 0, counters
            stop(td)
            stop(gen)

            gen = start_generator(work, sock, f"{tag}-gen", procs)
            rx = start_receiver(["dpdk-testpmd", "-l", "0,1", "--main-lcore", "1", *EAL_COMMON,
                                 f"--file-prefix={tag}-rx", f"--vdev={memif_client}", "--",
                                 "--no-mlockall", "--forward-mode=rxonly", "--nb-cores=1",
                                 "--total-num-mbufs=16384", "-a", "--stats-period=1000"],
                                work / "rx.log", f"{tag}-rx", procs)
            testpmd_pps, _ = measure(f"{tag}-rx", args.seconds)
            stop(rx)
            stop(gen)
            results.append((tandem_pps / testpmd_pps, tandem_pps, testpmd_pps, per_poll))
            print(f"round {len(results)}: tandemd {tandem_pps / 1e6:7.3f} Mpps "
                  f"({per_poll:4.1f} frames/busy poll of 32), testpmd rxonly "
                  f"{testpmd_pps / 1e6:7.3f} Mpps, ratio {tandem_pps / testpmd_pps:5.3f}", flush=True)

        ratio, tandem_pps, testpmd_pps, per_poll = sorted(results)[len(results) // 2]
        print(f"frames: 64-byte UDP to a non-local address over memif, {args.seconds:g} s per receiver")
        print(f"median round: tandemd (rx, classify, drop) {tandem_pps / 1e6:.3f} Mpps, "
              f"dpdk-testpmd rxonly (rx, free) {testpmd_pps / 1e6:.3f} Mpps, ratio {ratio:.3f}")
        return 0
    finally:
        for p in procs:
            stop(p)
        if sys.exc_info()[0] is None:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        else:
            print(f"logs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
