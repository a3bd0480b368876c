"""Self-tests of tandemlab/sessions.py without tandemd (root only): a client namespace and a
server namespace on one veth.

  - 1000 sessions (20 probes) against one SessionServer: all ok, every byte verified on both
    sides, every connection closed cleanly on the server;
  - a 400 ms outage (the server's link down): no session lost, the probes' longest pause is at
    least the outage (TCP retransmission makes it longer) and is reported with its wall-clock
    time; ConnectProber's first success after the link is back;
  - the server killed: every session counted as reset, none ok.
"""

from __future__ import annotations

import time

import pytest

from tandemlab.sessions import ConnectProber, SessionLoad, SessionServer, lost, report_line

PORT = 7100


def pair(lab, subnet):
    client, server = lab.netns("client"), lab.netns("server")
    c_if, s_if = lab.veth(client, server, lab.ifname("cli"), lab.ifname("srv"))
    lab.addr(client, c_if, f"{subnet}.1/24")
    lab.addr(server, s_if, f"{subnet}.2/24")
    return client, server, s_if, f"{subnet}.2"


@pytest.mark.lab_only
def test_thousand_sessions_all_verified(lab, subnet):
    client, server, _, address = pair(lab, subnet)
    srv = SessionServer(server, "s1", PORT, lifetime=60)
    load = SessionLoad(client, address, PORT, n=1000, probes=20, duration=4.0, timeout=3.0)
    op = load.opened()
    assert op["opened"] == 1000 and not op["failed"] and op["backends"] == {"s1": 1000}, op
    res = load.result()
    print("\n" + report_line(res, fault="none") + f"; open took {op['seconds']:.2f} s")
    assert res["ok"] == 1000 and lost(res) == 0, res["errors"]
    # 980 sessions x ~20 messages + 20 probes x ~800: both sides counted every message.
    assert res["messages"] > 980 * 4.0 / 0.2 * 0.8, res
    s = srv.wait_closed(timeout=5.0)
    assert s["accepted"] == 1000 and s["closed_ok"] == 1000, s
    assert s["messages"] == res["messages"] and not srv.errors(), (s, srv.errors()[:5])
    assert s["bytes"] == res["bytes_verified"], (s, res["bytes_verified"])


@pytest.mark.lab_only
def test_outage_is_measured_and_survived(lab, subnet):
    client, server, s_if, address = pair(lab, subnet)
    SessionServer(server, "s1", PORT, lifetime=60)
    load = SessionLoad(client, address, PORT, n=200, probes=10, duration=4.0, timeout=4.0)
    load.opened()
    prober = ConnectProber(client, address, PORT, every=0.01, timeout=1.0, duration=3.0)
    time.sleep(1.0)
    t_down, wall_down = time.monotonic(), time.time()
    lab.link_down(server, s_if)
    time.sleep(0.4)
    lab.link_up(server, s_if)
    t_up = time.monotonic()
    res = load.result()
    first = prober.first_ok_after(t_up)
    print("\n" + report_line(res, fault="link down 400 ms") + f"; longest pause began "
          f"{(res['max_pause_wall'] - wall_down) * 1000:+.0f} ms from the fault; first new "
          f"connection {first} ms after the link came back; "
          f"{len(prober.failed_between(t_down, t_up))} attempts failed during the outage")
    assert lost(res) == 0, res["errors"]
    assert res["probe_max_pause_ms"] >= 390, res
    assert -1000 < (res["max_pause_t"] - t_down) * 1000 < 50, res["pauses"][:3]
    assert first is not None, prober.attempts()[-5:]


@pytest.mark.lab_only
def test_killed_server_resets_every_session(lab, subnet):
    client, server, _, address = pair(lab, subnet)
    srv = SessionServer(server, "s1", PORT, lifetime=60)
    load = SessionLoad(client, address, PORT, n=100, probes=5, duration=2.0, timeout=2.0)
    assert load.opened()["opened"] == 100
    time.sleep(0.5)
    srv.process.kill()
    res = load.result()
    print("\n" + report_line(res, fault="server killed"))
    assert res["ok"] == 0 and res["reset"] == 100, res
    assert {e["kind"] for e in res["errors"]} == {"reset"}, res["errors"]


# --- offline: the wire protocol's checker and the result readers ---------------------------------

@pytest.mark.offline
def test_message_checker():
    from tandemlab.sessions import MessageChecker, encode_message
    msgs = [encode_message(7, 3, seq, bytes([seq]) * (8 + seq)) for seq in range(5)]
    stream = b"".join(msgs)
    c = MessageChecker()
    for i in range(0, len(stream), 7):               # in pieces that split messages
        c.feed(stream[i:i + 7])
    assert (c.msgs, c.run, c.conn, c.bytes, c.finish()) == (5, 7, 3, len(stream), None)
    bad = bytearray(stream)
    bad[len(msgs[0]) + 17] ^= 1                      # a payload byte of the second message
    c = MessageChecker()
    c.feed(bytes(bad))
    assert c.msgs == 1 and "checksum" in c.finish()
    c = MessageChecker()
    c.feed(msgs[0] + msgs[2])                        # one missing: out of sequence
    assert c.msgs == 1 and "sequence 2, expected 1" in c.finish()
    c = MessageChecker()
    c.feed(msgs[0] + encode_message(7, 4, 1, b"x" * 8))  # another session's message
    assert "session 4" in c.finish()
    c = MessageChecker()
    c.feed(msgs[0] + msgs[1][:-1])                   # cut short
    assert c.msgs == 1 and "incomplete" in c.finish()


@pytest.mark.offline
def test_result_readers():
    from tandemlab import sessions as ss
    res = {"run": 9, "sessions": 3, "ok": 2, "reset": 1, "stalled": 0, "corrupt": 0,
           "failed": 0, "messages": 30, "bytes_verified": 900, "max_pause_ms": 250.0,
           "probe_max_pause_ms": 120.0, "p99_pause_ms": 250.0,
           "timeline": [[100.0, 12.0], [100.05, 250.0], [103.0, 40.0]],
           "detail": [[0, "b1", "ok", 10, 300, 40000], [1, "b2", "ok", 10, 300, 40001],
                      [2, "b1", "reset", 10, 300, 40002]]}
    assert ss.lost(res) == 1
    assert ss.pause_between(res, 100.0, 101.0) == 250.0
    assert ss.pause_between(res, 102.0, 104.0) == 40.0 and ss.pause_between(res, 50, 60) == 0.0
    assert "reset 1" in ss.report_line(res, fault="kill") and ss.report_line(res).startswith(
        "sessions 2/3 ok")

    class FakeServer:
        def __init__(self, name, entries):
            self.name, self.entries = name, entries

        def sessions(self):
            return self.entries
    ok0 = {"run": 9, "conn": 0, "bytes": 300, "msgs": 10, "error": None}
    ok1 = {"run": 9, "conn": 1, "bytes": 300, "msgs": 10, "error": None}
    other_run = {"run": 8, "conn": 1, "bytes": 5, "msgs": 1, "error": None}
    assert ss.cross_check(res, [FakeServer("b1", [ok0]), FakeServer("b2", [ok1, other_run])]) == []
    short = dict(ok1, bytes=290)
    assert ss.cross_check(res, [FakeServer("b1", [ok0]), FakeServer("b2", [short])])
    assert ss.cross_check(res, [FakeServer("b1", [ok0, ok1])])       # on the wrong backend
    assert ss.cross_check(res, [FakeServer("b1", [ok0])])            # never seen
