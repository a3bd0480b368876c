"""Many long-lived TCP sessions through a VIP, measured: a load generator, its echo server and a
new-connection prober, each ONE background process in a namespace (non-blocking sockets and
`selectors`, no thread per connection), so a 2-core lab carries 1000+ sessions at once.

    srv = {h.name: SessionServer(h.ns, h.name, SESSION_PORT) for h in t.backends}
    load = SessionLoad(t.client, t.vip, SESSION_PORT, n=1000, probes=20, duration=10)
    load.opened()   -> {"opened": 1000, "failed": [], "backends": {"b1": 340, ...}, ...}
    prober = ConnectProber(t.client, t.vip, SESSION_PORT, every=0.01, duration=15)
    ... the fault, at time.monotonic() = t_fault ...
    res = load.result()     -> {"sessions", "ok", "reset", "stalled", "corrupt", "failed",
                                "messages", "bytes_verified", "max_pause_ms", "p99_pause_ms",
                                "probe_max_pause_ms", "pauses", "errors", ...}
    prober.first_success_after(t_fault)  -> seconds (or None)
    cross_check(res, srv)   -> [] when every server saw exactly what each client sent
    pause_between(res, t_fault - 1, t_fault + 3)  -> the stall around the fault (ms)
    print(report_line(res, fault="kill -9"))

The wire protocol (both ends verify it). The server greets every connection with
"hello <name>\\n" (as tandemlab.traffic.LbBackend's echo ports do, so SessionLoad works against
those too, without the server-side check). Then the client sends messages

    header  !HIIIH  magic 0x5453 ("TS"), run id, session index, sequence (0, 1, ...), length
    payload `length` pseudo-random bytes (8..39)
    trailer !I      crc32 of header + payload

and the server echoes every byte as it arrives while MessageChecker verifies magic, checksum,
run and session (the same all along) and the sequence (+1 each time). The client compares every
echoed byte with what it sent, in order.

SessionLoad (the client, `python3 sessions.py client CONFIG`):
  - n sessions in all, the first `probes` of them (indices 0 .. probes-1, opened first) probes:
    a regular session sends a message every `interval` s, a probe every `probe_interval` s,
    each starting at a random phase (sends are spread over time).
  - Opening is rate-limited (open_rate per second); a session is open when its greeting came
    (within `timeout` of the connect, else it "failed"). When every session is open or failed
    the client prints the "opened" line; the load then runs `duration` s, after which each
    session half-closes (shutdown SHUT_WR) and expects the rest of its echo, then EOF.
  - A session ends in one of: ok (every byte echoed, then EOF), "reset" (ECONNRESET, EPIPE or
    an early EOF), "stalled" (a message not echoed within `timeout`, or no EOF within `timeout`
    of the half-close: no progress), "corrupt" (a wrong, extra or out-of-order byte), "failed"
    (never opened). A session that is not ok is closed at once and counted once.
  - A pause is one message's round trip (queued for sending -> its last byte echoed): the
    message sent just before a fault waits for the whole outage. max_pause_ms is the longest
    over every session, probe_max_pause_ms over the probes (whose 5 ms spacing gives the stall
    ms resolution), p99_pause_ms the 99th percentile of the per-session longest pauses.
    "pauses" lists the top 10 sessions by longest pause: {"i", "probe", "backend", "ms", "at"
    (time.monotonic() when that message was queued), "wall" (time.time() of the same)}.
    "errors" (the first 20 sessions not ok): {"i", "probe", "backend", "kind" (the end state),
    "reason", "t", "wall", "msgs", "bytes"}. "timeline": [[t, ms]], the longest pause of the
    messages queued in each 50 ms slot (those of 10 ms or more), so that pause_between(result,
    t0, t1) gives one event's stall apart from the rest of the run. "detail": per session
    [index, backend, end state, messages, bytes sent, local port] (cross_check() uses it).
  - Times are time.monotonic() of the child (the same clock as the test's on this host); the
    result also has "max_pause_t" / "max_pause_wall" (time.monotonic() / time.time() when the
    longest paused message was queued) and each error's "t"/"wall".
  - progress() gives a line every 0.5 s: {"t" (since the load began), "mono", "phase",
    "running", "messages", "errors"}.
  - The child raises RLIMIT_NOFILE, sets TCP_NODELAY, and reports the namespace's ephemeral
    port range (the client namespace has no netfilter rule, so no conntrack is involved).
    Every loop is bounded in time: a hard deadline ends the run, counting what is left as
    stalled.

SessionServer (`python3 sessions.py server CONFIG`; SessionEchoServer is the same class): one
selectors process serving every given port; per connection, when it ends, one JSON line
{"kind": "session", "port", "peer", "sport", "run", "conn", "msgs", "bytes", "error"} (run/conn
None when nothing was sent, as for the prober's connections), and a {"stats": {"accepted",
"open", "closed_ok", "closed_error", "messages", "bytes"}} line every 0.2 s when they changed.
sessions() gives the per-connection lines, errors() those with an error, wait_closed() the
stats once no connection is open. LbBackend's thread-per-connection echo works for tens of
sessions; this one is meant for ~1000 per backend and checks the messages on the server side.

ConnectProber (`python3 sessions.py prober CONFIG`): a new connection to address:port every
`every` s (each with its own `timeout`; they overlap), ok when the greeting line came back (or
the handshake completed, greeting=False), then closed. attempts() -> [{"t" (monotonic start),
"ok", "ms", "wall", "error", "backend"}]; first_success_after(t) -> seconds from t to the end of
the first successful attempt begun at or after t (first_ok_after(t): the same in ms);
failed_between(t0, t1): the failed attempts begun in [t0, t1].

Standard library only at module level: the file runs as a script inside namespaces.
"""

from __future__ import annotations

import collections
import errno
import heapq
import json
import os
import random
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
SESSION_PORT = 7100               # a port of its own, next to ha_lab's echo on 7000
MAGIC = 0x5453
HEADER = struct.Struct("!HIIIH")  # magic, run, session index, sequence, payload length
TRAILER = struct.Struct("!I")     # crc32(header + payload)
PAYLOAD_MIN, PAYLOAD_MAX = 8, 40
TOP_PAUSES = 10
MAX_ERRORS = 20
PROGRESS_EVERY = 0.5
SWEEP_EVERY = 0.05
BUCKET = 0.05                     # s: the pause timeline's resolution (by the time queued)

# Session end states (the client's); "ok" is the only good one.
OK, RESET, STALLED, CORRUPT, FAILED = "ok", "reset", "stalled", "corrupt", "failed"
END_STATES = (OK, RESET, STALLED, CORRUPT, FAILED)


# --- the wire protocol -------------------------------------------------------------------------

def encode_message(run: int, conn: int, seq: int, payload: bytes) -> bytes:
    body = HEADER.pack(MAGIC, run & 0xFFFFFFFF, conn, seq & 0xFFFFFFFF, len(payload)) + payload
    return body + TRAILER.pack(zlib.crc32(body))


class MessageChecker:
    """The server's view of one connection's byte stream: feed() whatever arrived; it verifies
    each complete message (magic, crc32, the same run and session throughout, sequence 0, 1,
    ...). After the first error it stops checking (error says what and where)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.run: int | None = None
        self.conn: int | None = None
        self.next_seq = 0
        self.msgs = 0
        self.bytes = 0
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        if self.error:
            return
        self.buf += data
        while len(self.buf) >= HEADER.size:
            magic, run, conn, seq, length = HEADER.unpack_from(self.buf)
            if magic != MAGIC:
                self.error = f"bad magic {magic:#x} after {self.msgs} messages"
                return
            end = HEADER.size + length + TRAILER.size
            if len(self.buf) < end:
                return
            (crc,) = TRAILER.unpack_from(self.buf, end - TRAILER.size)
            if zlib.crc32(bytes(self.buf[:end - TRAILER.size])) != crc:
                self.error = f"bad checksum in message seq {seq}"
                return
            if self.run is None:
                self.run, self.conn = run, conn
            elif (run, conn) != (self.run, self.conn):
                self.error = f"message of run {run} session {conn} in {self.run}/{self.conn}"
                return
            if seq != self.next_seq:
                self.error = f"sequence {seq}, expected {self.next_seq}"
                return
            self.next_seq += 1
            self.msgs += 1
            del self.buf[:end]

    def finish(self) -> str | None:
        """The error, counting a partial message left at the end as one."""
        if not self.error and self.buf:
            self.error = f"{len(self.buf)} bytes of an incomplete message at the end"
        return self.error


def raise_nofile(want: int) -> int:
    """Raise this process's open-file limit to at least `want` (root may raise the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= want else want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, new_hard))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _port_range() -> list[int] | None:
    try:
        return [int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()]
    except OSError:
        return None


def _errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, type(e).__name__)


def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# --- the client -----------------------------------------------------------------------------

WAITING, CONNECTING, GREETING, RUNNING, CLOSING = ("waiting", "connecting", "greeting", "running",
                                                  "closing")


class _Session:
    __slots__ = ("i", "probe", "interval", "sock", "state", "reason", "backend", "local_port",
                 "inbuf", "pending", "outbuf", "inflight", "sent", "recv", "seq", "msgs",
                 "max_pause", "max_pause_at", "deadline", "last_progress", "shut_pending",
                 "ended_at")

    def __init__(self, i: int, probe: bool, interval: float):
        self.i, self.probe, self.interval = i, probe, interval
        self.sock: socket.socket | None = None
        self.state = WAITING                # not opened yet (opening is rate-limited)
        self.reason: str | None = None
        self.backend: str | None = None
        self.local_port: int | None = None
        self.inbuf = bytearray()
        self.pending = bytearray()          # sent, not yet echoed
        self.outbuf = bytearray()           # queued, not yet accepted by the kernel
        self.inflight: collections.deque = collections.deque()   # (end offset, queued at)
        self.sent = self.recv = self.seq = self.msgs = 0
        self.max_pause = 0.0
        self.max_pause_at = 0.0
        self.deadline = 0.0
        self.last_progress = 0.0
        self.shut_pending = False
        self.ended_at: float | None = None


class SessionClient:
    """The load generator's event loop (runs in the child; see the module docstring)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.address, self.port = cfg["address"], int(cfg["port"])
        self.n, self.probes = int(cfg["n"]), int(cfg["probes"])
        self.duration, self.timeout = float(cfg["duration"]), float(cfg["timeout"])
        self.open_gap = 1.0 / float(cfg["open_rate"])
        self.run_id = int(cfg["run"])
        self.rng = random.Random(self.run_id)
        self.probes = min(self.probes, self.n)
        self.sessions = [_Session(i, i < self.probes,
                                  float(cfg["probe_interval"] if i < self.probes
                                        else cfg["interval"]))
                         for i in range(self.n)]
        # Probes first (indices 0 .. probes-1), so they are in place as early as possible.
        self.to_open = collections.deque(range(self.n))
        self.sel = selectors.DefaultSelector()
        self.heap: list[tuple[float, int]] = []
        self.messages = 0
        self.bytes_verified = 0
        self.errors: list[dict] = []
        self.ended = {k: 0 for k in END_STATES}
        self.live = len(self.sessions)
        self.load_start: float | None = None
        self.send_until = float("inf")
        self.wall_offset = time.time() - time.monotonic()
        self.t0 = time.monotonic()
        self.timeline: dict[int, float] = {}     # bucket of the time queued -> longest pause

    # -- ends -----------------------------------------------------------------------------------
    def end(self, s: _Session, state: str, reason: str | None, now: float) -> None:
        if s.state in END_STATES:
            return
        s.state, s.reason, s.ended_at = state, reason, now
        self.ended[state] += 1
        self.live -= 1
        if state != OK and len(self.errors) < MAX_ERRORS:
            self.errors.append({"i": s.i, "probe": s.probe, "backend": s.backend,
                                "kind": state, "reason": reason, "t": round(now, 4),
                                "wall": round(now + self.wall_offset, 4),
                                "msgs": s.msgs, "bytes": s.recv})
        if s.sock is not None:
            try:
                self.sel.unregister(s.sock)
            except (KeyError, ValueError):
                pass
            s.sock.close()
            s.sock = None

    # -- opening --------------------------------------------------------------------------------
    def open_one(self, s: _Session, now: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sock, s.deadline, s.state = sock, now + self.timeout, CONNECTING
        rc = sock.connect_ex((self.address, self.port))
        if rc not in (0, errno.EINPROGRESS):
            self.end(s, FAILED, f"connect: {errno.errorcode.get(rc, rc)}", now)
            return
        self.sel.register(sock, selectors.EVENT_WRITE, s)

    def connected(self, s: _Session, now: float) -> None:
        err = s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.end(s, FAILED, f"connect: {errno.errorcode.get(err, err)}", now)
            return
        s.local_port = s.sock.getsockname()[1]
        s.state = GREETING
        self.sel.modify(s.sock, selectors.EVENT_READ, s)

    # -- sending --------------------------------------------------------------------------------
    def send_message(self, s: _Session, now: float) -> None:
        payload = self.rng.randbytes(self.rng.randrange(PAYLOAD_MIN, PAYLOAD_MAX))
        msg = encode_message(self.run_id, s.i, s.seq, payload)
        s.seq += 1
        s.pending += msg
        s.sent += len(msg)
        s.inflight.append((s.sent, now))
        s.outbuf += msg
        self.flush(s, now)

    def flush(self, s: _Session, now: float) -> None:
        if s.outbuf:
            try:
                k = s.sock.send(s.outbuf)
            except BlockingIOError:
                k = 0
            except OSError as e:
                self.end(s, RESET, f"send: {_errname(e)}", now)
                return
            del s.outbuf[:k]
        if s.outbuf:
            self.sel.modify(s.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, s)
            return
        if s.shut_pending:
            s.shut_pending = False
            try:
                s.sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                self.end(s, RESET, f"shutdown: {_errname(e)}", now)
                return
        self.sel.modify(s.sock, selectors.EVENT_READ, s)

    def start_close(self, s: _Session, now: float) -> None:
        s.state, s.shut_pending, s.last_progress = CLOSING, True, now
        self.flush(s, now)

    # -- receiving ------------------------------------------------------------------------------
    def readable(self, s: _Session, now: float) -> None:
        try:
            data = s.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.end(s, RESET, f"recv: {_errname(e)}", now)
            return
        if not data:
            if s.state == CLOSING and not s.pending:
                self.end(s, OK, None, now)
            elif s.state == CLOSING:
                self.end(s, RESET, f"EOF with {len(s.pending)} bytes not echoed", now)
            else:
                self.end(s, RESET, f"EOF while {s.state} after {s.msgs} messages", now)
            return
        if s.state == GREETING:
            s.inbuf += data
            if b"\n" not in s.inbuf:
                if len(s.inbuf) > 256:
                    self.end(s, FAILED, f"bad greeting {bytes(s.inbuf[:60])!r}", now)
                return
            line, _, rest = bytes(s.inbuf).partition(b"\n")
            words = line.decode(errors="replace").split()
            if len(words) != 2 or words[0] != "hello" or rest:
                self.end(s, FAILED, f"bad greeting {line[:60]!r} (+{len(rest)} bytes)", now)
                return
            s.backend, s.state, s.last_progress = words[1], RUNNING, now
            heapq.heappush(self.heap, (now + self.rng.uniform(0, s.interval), s.i))
            return
        k = len(data)
        if k > len(s.pending) or s.pending[:k] != data:
            self.end(s, CORRUPT, self.describe_mismatch(s, data), now)
            return
        del s.pending[:k]
        s.recv += k
        self.bytes_verified += k
        s.last_progress = now
        while s.inflight and s.inflight[0][0] <= s.recv:
            _, queued = s.inflight.popleft()
            pause = now - queued
            if pause > s.max_pause:
                s.max_pause, s.max_pause_at = pause, queued
            b = int(queued / BUCKET)
            if pause > self.timeline.get(b, 0.0):
                self.timeline[b] = pause
            s.msgs += 1
            self.messages += 1

    @staticmethod
    def describe_mismatch(s: _Session, data: bytes) -> str:
        if len(data) > len(s.pending) and s.pending == data[:len(s.pending)]:
            return f"{len(data) - len(s.pending)} bytes more than sent, at offset {s.sent}"
        at = next(j for j in range(min(len(data), len(s.pending)))
                  if data[j] != s.pending[j]) if s.pending else 0
        return (f"byte {s.recv + at} (message {s.msgs}+): expected "
                f"{bytes(s.pending[at:at + 8]).hex()} got {data[at:at + 8].hex()}")

    # -- the loop -------------------------------------------------------------------------------
    def sweep(self, now: float) -> None:
        for s in self.sessions:
            st = s.state
            if st in (CONNECTING, GREETING):
                if now > s.deadline:
                    self.end(s, FAILED, f"no {'connection' if st == CONNECTING else 'greeting'}"
                             f" within {self.timeout:g} s", now)
            elif st == RUNNING:
                if s.inflight and now - s.inflight[0][1] > self.timeout:
                    self.end(s, STALLED, f"message {s.msgs} not echoed within "
                             f"{self.timeout:g} s (queued at {s.inflight[0][1]:.3f})", now)
            elif st == CLOSING:
                if s.inflight and now - s.inflight[0][1] > self.timeout:
                    self.end(s, STALLED, f"message {s.msgs} not echoed within "
                             f"{self.timeout:g} s (queued at {s.inflight[0][1]:.3f})", now)
                elif now - s.last_progress > self.timeout:
                    what = f"{len(s.pending)} bytes not echoed" if s.pending else "no EOF"
                    self.end(s, STALLED, f"{what} within {self.timeout:g} s of the half-close",
                             now)

    def opened_line(self, now: float) -> dict:
        backends: dict[str, int] = {}
        for s in self.sessions:
            if s.backend is not None and s.state not in (FAILED,):
                backends[s.backend] = backends.get(s.backend, 0) + 1
        failed = [{"i": s.i, "reason": s.reason} for s in self.sessions if s.state == FAILED]
        return {"opened": len(self.sessions) - len(failed), "failed": failed[:MAX_ERRORS],
                "failed_count": len(failed), "backends": backends, "t": now,
                "seconds": round(now - self.t0, 3),
                "wall": now + self.wall_offset, "port_range": _port_range(),
                "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}

    def run(self) -> dict:
        raise_nofile(len(self.sessions) + 256)
        t0 = self.t0 = time.monotonic()
        next_open = t0
        next_sweep = next_progress = t0
        opening_time = len(self.sessions) * self.open_gap
        hard_deadline = t0 + opening_time + 2 * self.timeout + self.duration + 3 * self.timeout + 10
        while self.live > 0:
            now = time.monotonic()
            if now > hard_deadline:
                for s in self.sessions:
                    self.end(s, STALLED, f"still {s.state} at the hard deadline", now)
                break
            while self.to_open and next_open <= now:
                self.open_one(self.sessions[self.to_open.popleft()], now)
                next_open += self.open_gap
            if self.load_start is None and not self.to_open and not any(
                    s.state in (CONNECTING, GREETING) for s in self.sessions):
                self.load_start = now
                self.send_until = now + self.duration
                _emit(self.opened_line(now))
            while self.heap and self.heap[0][0] <= now:
                due, i = heapq.heappop(self.heap)
                s = self.sessions[i]
                if s.state != RUNNING:
                    continue
                if now >= self.send_until:
                    self.start_close(s, now)
                    continue
                self.send_message(s, now)
                if s.state == RUNNING:
                    nxt = due + s.interval
                    heapq.heappush(self.heap, (nxt if nxt > now else now + s.interval, i))
            if now >= next_sweep:
                self.sweep(now)
                next_sweep = now + SWEEP_EVERY
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                _emit({"t": round(now - (self.load_start or t0), 3), "mono": round(now, 4),
                       "phase": "opening" if self.load_start is None else
                       ("load" if now < self.send_until else "closing"),
                       "running": sum(1 for s in self.sessions if s.state == RUNNING),
                       "messages": self.messages, "errors": len(self.sessions) - self.live
                       - self.ended[OK]})
            wake = min(next_sweep, next_progress, hard_deadline)
            if self.heap:
                wake = min(wake, self.heap[0][0])
            if self.to_open:
                wake = min(wake, next_open)
            for key, mask in self.sel.select(max(0.0, wake - time.monotonic())):
                s = key.data
                now = time.monotonic()
                if s.state == CONNECTING:
                    self.connected(s, now)
                    continue
                if mask & selectors.EVENT_WRITE and s.state not in END_STATES:
                    self.flush(s, now)
                if mask & selectors.EVENT_READ and s.state not in END_STATES:
                    self.readable(s, now)
        if self.load_start is None:
            _emit(self.opened_line(time.monotonic()))
        return self.result(time.monotonic() - t0)

    def result(self, seconds: float) -> dict:
        open_ = [s for s in self.sessions if s.backend is not None]
        pauses = sorted(open_, key=lambda s: s.max_pause, reverse=True)
        per = sorted(s.max_pause for s in open_)
        p99 = per[min(len(per) - 1, int(0.99 * len(per)))] if per else 0.0
        probes = [s.max_pause for s in open_ if s.probe]
        top = pauses[0] if pauses else None
        return {
            "run": self.run_id, "sessions": len(self.sessions), "probes": self.probes,
            **{k: self.ended[k] for k in END_STATES},
            "messages": self.messages, "bytes_verified": self.bytes_verified,
            "max_pause_ms": round(top.max_pause * 1000, 1) if top else None,
            "max_pause_t": round(top.max_pause_at, 4) if top else None,
            "max_pause_wall": round(top.max_pause_at + self.wall_offset, 4) if top else None,
            "p99_pause_ms": round(p99 * 1000, 1),
            "probe_max_pause_ms": round(max(probes) * 1000, 1) if probes else None,
            "pauses": [{"i": s.i, "probe": s.probe, "backend": s.backend,
                        "ms": round(s.max_pause * 1000, 1), "at": round(s.max_pause_at, 4),
                        "wall": round(s.max_pause_at + self.wall_offset, 4)}
                       for s in pauses[:TOP_PAUSES]],
            "errors": self.errors,
            "load_start": self.load_start, "duration": self.duration, "seconds": round(seconds, 3),
            # Per session: [index, backend, state, messages, bytes sent, local port].
            "detail": [[s.i, s.backend, s.state, s.msgs, s.sent, s.local_port]
                       for s in self.sessions],
            # [start of a BUCKET s slot (monotonic), the longest pause of a message queued in
            # it, ms], for the slots with a pause of 10 ms or more: see pause_between().
            "timeline": [[round(b * BUCKET, 3), round(p * 1000, 1)]
                         for b, p in sorted(self.timeline.items()) if p >= 0.01],
        }


# --- the echo server ---------------------------------------------------------------------------

class _ServerConn:
    __slots__ = ("sock", "port", "peer", "out", "check", "eof", "error")

    def __init__(self, sock: socket.socket, port: int, peer: tuple[str, int], greeting: bytes):
        self.sock, self.port, self.peer = sock, port, peer
        self.out = bytearray(greeting)
        self.check = MessageChecker()
        self.eof = False
        self.error: str | None = None


def run_server(cfg: dict) -> None:
    name, bind, lifetime = cfg["name"], cfg.get("bind", "0.0.0.0"), float(cfg["lifetime"])
    greeting = f"hello {name}\n".encode()
    raise_nofile(int(cfg.get("nofile", 8192)))
    sel = selectors.DefaultSelector()
    for port in cfg["ports"]:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((bind, int(port)))
        srv.listen(4096)
        srv.setblocking(False)
        sel.register(srv, selectors.EVENT_READ, ("listen", int(port)))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    _emit({"ready": name, "ports": cfg["ports"]})
    stats = {"accepted": 0, "open": 0, "closed_ok": 0, "closed_error": 0, "messages": 0,
             "bytes": 0}

    def finish(c: _ServerConn) -> None:
        err = c.error or c.check.finish()
        stats["open"] -= 1
        stats["closed_error" if err else "closed_ok"] += 1
        stats["messages"] += c.check.msgs
        stats["bytes"] += c.check.bytes
        _emit({"kind": "session", "port": c.port, "peer": c.peer[0], "sport": c.peer[1],
               "run": c.check.run, "conn": c.check.conn, "msgs": c.check.msgs,
               "bytes": c.check.bytes, "error": err})
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        if c.error is None:
            try:
                c.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        c.sock.close()

    def flush(c: _ServerConn) -> None:
        if c.out:
            try:
                k = c.sock.send(c.out)
            except BlockingIOError:
                k = 0
            except OSError as e:
                c.error = f"send: {_errname(e)}"
                finish(c)
                return
            del c.out[:k]
        if c.out:
            sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        elif c.eof:
            finish(c)
        else:
            sel.modify(c.sock, selectors.EVENT_READ, c)

    deadline = time.monotonic() + lifetime
    last_stats: dict = {}
    next_stats = time.monotonic()
    while not stop and time.monotonic() < deadline:
        if time.monotonic() >= next_stats:
            next_stats = time.monotonic() + 0.2
            if stats != last_stats:
                last_stats = dict(stats)
                _emit({"stats": last_stats})
        for key, mask in sel.select(0.2):
            if isinstance(key.data, tuple):
                for _ in range(64):
                    try:
                        sock, peer = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    c = _ServerConn(sock, key.data[1], peer, greeting)
                    stats["accepted"] += 1
                    stats["open"] += 1
                    sel.register(sock, selectors.EVENT_READ, c)
                    flush(c)
                continue
            c = key.data
            if mask & selectors.EVENT_READ and not c.eof:
                try:
                    data = c.sock.recv(65536)
                except BlockingIOError:
                    data = None
                except OSError as e:
                    c.error = f"recv: {_errname(e)}"
                    finish(c)
                    continue
                if data == b"":
                    c.eof = True
                elif data:
                    c.out += data          # echo at once; check on the side
                    c.check.feed(data)
            flush(c)
    _emit({"stats": stats})


# --- the new-connection prober -------------------------------------------------------------------

def run_prober(cfg: dict) -> None:
    address, port = cfg["address"], int(cfg["port"])
    every, timeout = float(cfg["every"]), float(cfg["timeout"])
    duration, greeting = float(cfg["duration"]), bool(cfg["greeting"])
    raise_nofile(int(timeout / every) * 4 + 256)
    wall_offset = time.time() - time.monotonic()
    sel = selectors.DefaultSelector()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    attempts: list[list] = []            # [start, ok, ms, error, backend]
    live: dict[int, list] = {}           # fd -> [sock, start, attempt index, stage]
    t0 = time.monotonic()
    _emit({"ready": "prober", "t": t0})
    next_try = t0

    def done(fd: int, ok: bool, error: str | None, now: float, backend: str | None = None) -> None:
        sock, start, idx, _ = live.pop(fd)
        attempts[idx][1:] = [ok, round((now - start) * 1000, 2), error, backend]
        try:
            sel.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    while (not stop and time.monotonic() < t0 + duration) or live:
        now = time.monotonic()
        if now > t0 + duration + timeout + 5:
            break
        if not stop and now < t0 + duration and now >= next_try:
            next_try += every
            if next_try < now:
                next_try = now + every
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            attempts.append([round(now, 4), False, None, "pending", None])
            rc = sock.connect_ex((address, port))
            if rc not in (0, errno.EINPROGRESS):
                attempts[-1][1:] = [False, 0.0, f"connect: {errno.errorcode.get(rc, rc)}", None]
                sock.close()
            else:
                live[sock.fileno()] = [sock, now, len(attempts) - 1, "connect"]
                sel.register(sock, selectors.EVENT_WRITE, sock.fileno())
        for fd, (sock, start, _, _) in list(live.items()):
            if now - start > timeout:
                done(fd, False, f"timeout ({live[fd][3]})", now)
        for key, mask in sel.select(max(0.0, min(next_try, now + 0.01) - time.monotonic())):
            fd = key.data
            if fd not in live:
                continue
            now = time.monotonic()
            sock, _, _, stage = live[fd]
            if stage == "connect":
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    done(fd, False, f"connect: {errno.errorcode.get(err, err)}", now)
                elif not greeting:
                    done(fd, True, None, now)
                else:
                    live[fd][3] = "greeting"
                    sel.modify(sock, selectors.EVENT_READ, fd)
                continue
            try:
                data = sock.recv(256)
            except BlockingIOError:
                continue
            except OSError as e:
                done(fd, False, f"recv: {_errname(e)}", now)
                continue
            if data.startswith(b"hello ") and data.endswith(b"\n"):
                done(fd, True, None, now, data[6:-1].decode(errors="replace"))
            else:
                done(fd, False, f"greeting {data[:40]!r}", now)
    _emit({"attempts": attempts, "wall_offset": wall_offset})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ("client", "server", "prober"):
        print("usage: sessions.py client|server|prober CONFIG_JSON", file=sys.stderr)
        return 2
    cfg = json.loads(argv[1])
    if argv[0] == "client":
        _emit({"result": SessionClient(cfg).run()})
    elif argv[0] == "server":
        run_server(cfg)
    else:
        run_prober(cfg)
    return 0


# --- the test side: start them in namespaces, read their results --------------------------------

def _spawn(ns: Any, kind: str, cfg: dict, log_name: str):
    return ns.spawn([sys.executable, "-I", str(SCRIPT), kind, json.dumps(cfg)], log_name=log_name)


def _lines(process, prefix: str) -> list[dict]:
    """The complete lines (the last one may still be being written) starting with prefix."""
    return [json.loads(line) for line in process.log().split("\n")[:-1]
            if line.startswith(prefix)]


def _wait_line(process, prefix: str, timeout: float) -> dict:
    """The first complete line starting with prefix, once there (the process's own failure or
    TimeoutError otherwise)."""
    deadline = time.monotonic() + timeout
    while True:
        got = _lines(process, prefix)
        if got:
            return got[0]
        process.wait_output(prefix, timeout=max(0.1, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{process.name}: no complete line {prefix!r} in {timeout:g} s")
        time.sleep(0.02)


class SessionServer:
    """The echo server (module docstring) on `ports` (one port or several) in a backend
    namespace; lives at most `lifetime` s."""

    def __init__(self, ns: Any, name: str, ports: "int | list[int]" = SESSION_PORT, *,
                 bind: str = "0.0.0.0", lifetime: float = 300.0, log_name: str | None = None):
        self.ns, self.name = ns, name
        self.ports = [ports] if isinstance(ports, int) else list(ports)
        self.process = _spawn(ns, "server", {"name": name, "ports": self.ports, "bind": bind,
                                             "lifetime": lifetime},
                              log_name or f"sessions-server-{name}")
        self.process.wait_output('{"ready"', timeout=10)

    def sessions(self) -> list[dict]:
        """One dict per connection that ended: {"kind": "session", "port", "peer", "sport",
        "run", "conn", "msgs", "bytes", "error"}."""
        return _lines(self.process, '{"kind": "session"')

    def errors(self) -> list[dict]:
        return [e for e in self.sessions() if e["error"]]

    def stats(self) -> dict:
        """The latest {"accepted", "open", "closed_ok", "closed_error", "messages", "bytes"}."""
        got = _lines(self.process, '{"stats"')
        return got[-1]["stats"] if got else {"accepted": 0, "open": 0, "closed_ok": 0,
                                             "closed_error": 0, "messages": 0, "bytes": 0}

    def wait_closed(self, timeout: float = 5.0) -> dict:
        """Waits until connections were accepted and none is open any more; the stats
        (TimeoutError with the last ones otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.stats()
            if st["accepted"] > 0 and st["open"] == 0:
                return st
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: connections still open after {timeout:g} s: "
                                   f"{st}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop()


SessionEchoServer = SessionServer


class SessionLoad:
    """n long-lived sessions (+ `probes` fast ones) from a namespace to address:port, in one
    background process; see the module docstring for what is measured and the result's keys."""

    def __init__(self, ns: Any, address: str, port: int, *, n: int = 1000, probes: int = 20,
                 interval: float = 0.2, probe_interval: float = 0.005, duration: float = 20.0,
                 open_rate: float = 500.0, timeout: float = 5.0, log_name: str = "sessions"):
        self.n, self.probes, self.duration, self.timeout = n, probes, duration, timeout
        self.open_time = n / open_rate
        self.run = random.SystemRandom().randrange(1, 2 ** 32)
        cfg = {"address": address, "port": port, "n": n, "probes": probes, "interval": interval,
               "probe_interval": probe_interval, "duration": duration, "open_rate": open_rate,
               "timeout": timeout, "run": self.run}
        self.process = _spawn(ns, "client", cfg, log_name)
        self._result: dict | None = None

    def opened(self) -> dict:
        """Waits until every session is open or failed: {"opened", "failed" (first few:
        {"i", "reason"}), "failed_count", "backends": {name: count}, "t", "wall", ...}."""
        return _wait_line(self.process, '{"opened"', self.open_time + 2 * self.timeout + 30)

    def progress(self) -> list[dict]:
        return _lines(self.process, '{"t"')

    def result(self) -> dict:
        """Waits for the end (the load's duration, then the closing); the result dict."""
        if self._result is None:
            self._result = _wait_line(self.process, '{"result"', self.open_time + self.duration
                                      + 6 * self.timeout + 30)["result"]
        return self._result

    def stop(self) -> None:
        self.process.stop()


class ConnectProber:
    """A new connection to address:port every `every` s for `duration` s (or until stop()),
    each failing after `timeout` s; see the module docstring."""

    def __init__(self, ns: Any, address: str, port: int, *, every: float = 0.01,
                 timeout: float = 0.1, duration: float = 30.0, greeting: bool = True,
                 log_name: str = "prober"):
        self.duration, self.timeout = duration, timeout
        self.process = _spawn(ns, "prober", {"address": address, "port": port, "every": every,
                                             "timeout": timeout, "duration": duration,
                                             "greeting": greeting}, log_name)
        self.process.wait_output('{"ready"', timeout=10)
        self._attempts: list[dict] | None = None

    def stop(self) -> None:
        """Ends the probing now (what is in flight finishes or times out)."""
        import signal as _signal
        self.process.signal(_signal.SIGTERM)

    def attempts(self) -> list[dict]:
        """Waits for the end: [{"t", "ok", "ms", "wall", "error", "backend" (who greeted)}] in
        order of start."""
        if self._attempts is None:
            d = _wait_line(self.process, '{"attempts"', self.duration + self.timeout + 20)
            self._attempts = [{"t": t, "ok": ok, "ms": ms, "wall": t + d["wall_offset"],
                               "error": err, "backend": backend}
                              for t, ok, ms, err, backend in d["attempts"]]
        return self._attempts

    def first_success_after(self, t: float) -> float | None:
        """Seconds from t (time.monotonic()) to the end of the first successful attempt begun
        at or after t; None if none succeeded."""
        for a in self.attempts():
            if a["t"] >= t and a["ok"]:
                return a["t"] + a["ms"] / 1000 - t
        return None

    def first_ok_after(self, t: float) -> float | None:
        """first_success_after(t) in ms (rounded to 0.1), or None."""
        s = self.first_success_after(t)
        return None if s is None else round(s * 1000, 1)

    def failed_between(self, t0: float, t1: float) -> list[dict]:
        """The failed attempts begun in [t0, t1] (time.monotonic())."""
        return [a for a in self.attempts() if t0 <= a["t"] <= t1 and not a["ok"]]


# --- reading results -----------------------------------------------------------------------------

def lost(result: dict) -> int:
    """Sessions not ok (reset, stalled, corrupt or never opened): the RPO in sessions."""
    return result["sessions"] - result[OK]


def cross_check(result: dict, servers: "dict[str, SessionServer] | list") -> list[str]:
    """What the servers saw against what the client sent, per session of this run: each ok
    session seen by exactly one server (the backend that greeted it) as one connection with
    the same number of bytes, every message in order, no error. Returns the problems (first
    20), [] when all is well."""
    servers = list(servers.values()) if isinstance(servers, dict) else list(servers)
    seen: dict[int, list[tuple[str, dict]]] = {}
    for srv in servers:
        for e in srv.sessions():
            if e["run"] == result["run"]:
                seen.setdefault(e["conn"], []).append((srv.name, e))
    problems = []
    for i, backend, state, msgs, sent, _ in result["detail"]:
        if state != OK:
            continue
        got = seen.get(i, [])
        if len(got) != 1:
            problems.append(f"session {i}: seen {len(got)} times: {got[:3]}")
            continue
        name, e = got[0]
        if name != backend or e["bytes"] != sent or e["error"] or e["msgs"] < msgs:
            problems.append(f"session {i} ({backend}, {sent} bytes, {msgs} messages) seen by "
                            f"{name} as {e}")
        if len(problems) >= 20:
            break
    return problems


def pause_between(result: dict, t0: float, t1: float) -> float:
    """The longest pause (ms) of a message queued in [t0, t1] (time.monotonic(), to BUCKET s):
    the client-seen stall of an event, apart from the noise elsewhere in the run."""
    return max((p for t, p in result["timeline"] if t0 - BUCKET < t <= t1), default=0.0)


def report_line(result: dict, fault: str | None = None) -> str:
    """One line: (the fault,) sessions ok/total, the bad ones by kind, messages and bytes
    verified, the longest pause (probes), p99."""
    bad = ", ".join(f"{k} {result[k]}" for k in (RESET, STALLED, CORRUPT, FAILED) if result[k])
    head = f"{fault}: " if fault else ""
    bad = f" ({bad})" if bad else ""
    return (f"{head}sessions {result[OK]}/{result['sessions']} ok{bad}, "
            f"{result['messages']} messages, {result['bytes_verified']} bytes verified, "
            f"longest pause {result['max_pause_ms']} ms (probes {result['probe_max_pause_ms']} "
            f"ms, p99 {result['p99_pause_ms']} ms)")


if __name__ == "__main__":
    sys.exit(main())
