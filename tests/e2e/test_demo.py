"""scripts/demo.py end to end, small: 100 sessions and 3 s of traffic per run instead of 300 and
6 s. With replication every session survives the kill -9 of the active unit, bytes are verified
and the survivor reports its detection and takeover; without replication sessions are lost.
Afterwards no namespace of the demo is left. The figures are printed (pytest -s), not asserted
on: timings on a shared 2-core machine are noise."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import tandemlab as tl

DEMO = tl.repo_root() / "scripts" / "demo.py"
TIMEOUT = 120.0      # the demo takes ~15 s at this size; a hung one is stopped (it cleans up)


def run_demo(*args: str) -> tuple[int, dict | None, str, int]:
    """(exit status, its JSON or None, stderr, its pid)."""
    p = subprocess.Popen([sys.executable, str(DEMO), "--json", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)            # the demo removes its lab on SIGTERM
        out, err = p.communicate(timeout=30)
        err = f"timed out after {TIMEOUT:g}s\n{err}"
    try:
        data = json.loads(out) if p.returncode == 0 else None
    except json.JSONDecodeError:
        data = None
    return p.returncode, data, err, p.pid


def test_demo_failover_with_and_without_replication():
    rc, data, err, pid = run_demo("--sessions", "100", "--seconds", "3")
    left = [n for n in tl.list_netns() if n.startswith(f"demo{pid}-")]
    assert not left, f"the demo left namespaces behind: {left}"
    assert rc == 0 and data is not None, f"demo exited {rc}:\n{err[-3000:]}"
    on, off = data["replication_on"], data["replication_off"]
    print(f"\ndemo took {data['demo_seconds']} s; replication on: {on}\nreplication off: {off}")

    assert len(data["labs"]) == 2
    assert on["sessions_before"] == off["sessions_before"] == 100
    assert on["replicated_entries"] >= 100, on
    assert on["kept"] == 100 and on["rpo_sessions_lost"] == 0, on
    assert on["bytes_verified"] > 0 and on["backend_view_problems"] == [], on
    for key in ("detection_ms", "takeover_ms", "first_new_connection_ms", "max_stall_ms"):
        assert on[key] is not None, (key, on)

    assert off["replicated_entries"] == 0, off
    assert off["rpo_sessions_lost"] > 0, off
    assert off["detection_ms"] is not None, off
