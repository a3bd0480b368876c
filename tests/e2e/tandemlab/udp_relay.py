"""A userspace UDP relay that delays, reorders, duplicates and drops datagrams on purpose.

Run as a script inside a namespace (stdlib only, so it works without the package):

    ip netns exec NS python3 -I udp_relay.py --listen 10.199.42.1:9694 --dest 10.199.42.2:8694 \
        --delay-ms 5 --jitter-ms 5 --duplicate 0.05 --loss 0 --seed 1 --lifetime 60 \
        --stats-file /tmp/x/relay.json

or from a test through UdpRelay, which starts it with Netns.spawn (the lab stops it on close):

    r = UdpRelay(ns, "10.199.42.1:9694", "10.199.42.2:8694", delay_ms=5, jitter_ms=5,
                 duplicate=0.05, seed=1, log_name="relay-ab")
    ... r.stats() -> {"received": n, "forwarded": n, "duplicated": n, "dropped": n,
                      "reordered": n, "overflow": n, "ignored": n, ...}
    r.stop() -> the final stats (printed by the relay on SIGTERM)

Every datagram received on LISTEN is forwarded to DEST from the listening socket (so DEST sees
LISTEN as its source), after `delay_ms` plus a uniform random extra in [0, jitter_ms): with a
jitter larger than the gap between two datagrams their order changes. Per datagram, in this
order and always drawing all of them (so a seed gives the same decisions for the same arrival
sequence): a loss draw (dropped with probability `loss`), a duplication draw (a second copy,
with its own random extra delay, with probability `duplicate`), the jitter draws.

Counts: received (datagrams read), dropped (by the loss draw), duplicated (extra copies made),
forwarded (datagrams sent to DEST, copies included), reordered (sent after a datagram that
arrived later than it: each copy counted once), overflow (dropped because `max_queue` datagrams
were already waiting), ignored (datagrams whose source is DEST itself: never sent back, so a
relay cannot loop), send_errors, and the delays actually applied (min/max/sum in ms, from
arrival to send). They are written to `--stats-file` (atomically, every 100 ms and at exit)
and printed as one JSON line {"stats": {...}} on SIGTERM/SIGINT and at the end of the lifetime.

Everything is bounded: the relay exits after `--lifetime` seconds, holds at most `--max-queue`
datagrams, and reads at most 64 datagrams per wake-up before sending what is due.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import selectors
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

RELAY_SCRIPT = Path(__file__).resolve()
STATS_KEYS = ("received", "forwarded", "duplicated", "dropped", "reordered", "overflow",
              "ignored", "send_errors")


def _endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT, got {text!r}")
    return host, int(port)


def _probability(text: str) -> float:
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability is 0..1, not {text}")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="UDP relay with delay, jitter, duplication, loss")
    p.add_argument("--listen", type=_endpoint, required=True, help="ADDRESS:PORT to bind")
    p.add_argument("--dest", type=_endpoint, required=True, help="ADDRESS:PORT to forward to")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0,
                   help="a uniform random extra delay in [0, J) per datagram (reorders)")
    p.add_argument("--duplicate", type=_probability, default=0.0)
    p.add_argument("--loss", type=_probability, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lifetime", type=float, default=120.0, help="exit after this many seconds")
    p.add_argument("--max-queue", type=int, default=10000)
    p.add_argument("--stats-file", type=Path, default=None)
    return p


class Relay:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setblocking(False)
        self.sock.bind(args.listen)
        self.dest = (socket.gethostbyname(args.dest[0]), args.dest[1])
        # (due, tie-breaker, arrival index, data, arrival time)
        self.queue: list[tuple[float, int, int, bytes, float]] = []
        self.tie = 0
        self.arrivals = 0
        self.highest_sent_arrival = -1
        self.stats: dict[str, Any] = {k: 0 for k in STATS_KEYS}
        self.stats.update({"delay_ms_min": None, "delay_ms_max": None, "delay_ms_sum": 0.0,
                           "listen": f"{args.listen[0]}:{args.listen[1]}",
                           "dest": f"{self.dest[0]}:{self.dest[1]}", "seed": args.seed,
                           "queued": 0, "done": False})
        self.stopping = False
        self.last_write = 0.0

    # -- decisions ---------------------------------------------------------------------------
    def _delay(self) -> float:
        extra = self.rng.random() * self.args.jitter_ms
        return (self.args.delay_ms + extra) / 1000.0

    def _schedule(self, now: float, data: bytes, arrival: int, delay: float) -> None:
        if len(self.queue) >= self.args.max_queue:
            self.stats["overflow"] += 1
            return
        self.tie += 1
        heapq.heappush(self.queue, (now + delay, self.tie, arrival, data, now))

    def receive(self, data: bytes, src: tuple[str, int], now: float) -> None:
        if src[0] == self.dest[0] and src[1] == self.dest[1]:
            self.stats["ignored"] += 1
            return
        self.stats["received"] += 1
        arrival = self.arrivals
        self.arrivals += 1
        lose = self.rng.random() < self.args.loss
        dup = self.rng.random() < self.args.duplicate
        d1, d2 = self._delay(), self._delay()
        if lose:
            self.stats["dropped"] += 1
            return
        self._schedule(now, data, arrival, d1)
        if dup:
            self.stats["duplicated"] += 1
            self._schedule(now, data, arrival, d2)

    def send_due(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            _, _, arrival, data, t_in = heapq.heappop(self.queue)
            try:
                self.sock.sendto(data, self.dest)
            except OSError:
                self.stats["send_errors"] += 1
                continue
            self.stats["forwarded"] += 1
            if arrival < self.highest_sent_arrival:
                self.stats["reordered"] += 1
            self.highest_sent_arrival = max(self.highest_sent_arrival, arrival)
            held = (time.monotonic() - t_in) * 1000.0
            s = self.stats
            s["delay_ms_sum"] += held
            s["delay_ms_min"] = held if s["delay_ms_min"] is None else min(s["delay_ms_min"], held)
            s["delay_ms_max"] = held if s["delay_ms_max"] is None else max(s["delay_ms_max"], held)

    # -- reporting ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        s = dict(self.stats)
        s["queued"] = len(self.queue)
        for k in ("delay_ms_min", "delay_ms_max", "delay_ms_sum"):
            if s[k] is not None:
                s[k] = round(s[k], 3)
        return s

    def write_stats(self, final: bool = False) -> None:
        if self.args.stats_file is None:
            return
        s = self.snapshot()
        s["done"] = final
        tmp = self.args.stats_file.with_name(self.args.stats_file.name + ".tmp")
        tmp.write_text(json.dumps(s))
        os.replace(tmp, self.args.stats_file)

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        deadline = time.monotonic() + self.args.lifetime
        print(json.dumps({"ready": self.stats["listen"], "dest": self.stats["dest"]}), flush=True)
        self.write_stats()
        while not self.stopping:
            now = time.monotonic()
            if now >= deadline:
                break
            timeout = min(deadline - now, 0.1)
            if self.queue:
                timeout = max(0.0, min(timeout, self.queue[0][0] - now))
            for _key, _ev in sel.select(timeout):
                for _ in range(64):
                    try:
                        data, src = self.sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:       # e.g. ECONNREFUSED reported for an earlier send
                        self.stats["send_errors"] += 1
                        break
                    self.receive(data, src, time.monotonic())
            now = time.monotonic()
            self.send_due(now)
            if now - self.last_write >= 0.1:
                self.last_write = now
                self.write_stats()
        sel.close()
        self.sock.close()
        self.write_stats(final=True)
        s = self.snapshot()
        s["done"] = True
        print(json.dumps({"stats": s}), flush=True)
        return s


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    relay = Relay(args)

    def stop(_signum, _frame):
        relay.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    relay.run()
    return 0


# --- the test-side wrapper ------------------------------------------------------------------

class UdpRelay:
    """The relay above, running in a lab namespace (a Background process the lab stops on
    close). listen/dest: "ADDRESS:PORT". stats() reads the stats file (at most ~100 ms old);
    stop() sends SIGTERM and returns the final stats."""

    def __init__(self, ns: Any, listen: str, dest: str, *, delay_ms: float = 0.0,
                 jitter_ms: float = 0.0, duplicate: float = 0.0, loss: float = 0.0,
                 seed: int = 1, lifetime: float = 120.0, max_queue: int = 10000,
                 log_name: str = "udp-relay"):
        self.ns, self.listen, self.dest = ns, listen, dest
        self.stats_path = Path(ns.lab.workdir) / f"{log_name}.stats.json"
        argv = [sys.executable, "-I", str(RELAY_SCRIPT), "--listen", listen, "--dest", dest,
                "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
                "--duplicate", str(duplicate), "--loss", str(loss), "--seed", str(seed),
                "--lifetime", str(lifetime), "--max-queue", str(max_queue),
                "--stats-file", str(self.stats_path)]
        self.process = ns.spawn(argv, log_name=log_name)
        self.process.wait_output('{"ready"', timeout=10)

    def __repr__(self) -> str:
        return f"UdpRelay({self.listen} -> {self.dest} in {self.ns.name})"

    def running(self) -> bool:
        return self.process.poll() is None

    def stats(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                return json.loads(self.stats_path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                time.sleep(0.02)
        raise RuntimeError(f"{self!r}: no stats file {self.stats_path}:\n{self.process.log()}")

    def final_stats(self) -> dict[str, Any] | None:
        """The {"stats": ...} line printed when the relay ended (None while it runs)."""
        for line in reversed(self.process.log().splitlines()):
            if line.startswith('{"stats"'):
                return json.loads(line)["stats"]
        return None

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        self.process.stop(timeout=timeout)
        final = self.final_stats()
        if final is None:
            raise RuntimeError(f"{self!r} printed no final stats:\n{self.process.log()}")
        return final


__all__ = ["UdpRelay", "RELAY_SCRIPT", "STATS_KEYS", "main"]


if __name__ == "__main__":
    sys.exit(main())
