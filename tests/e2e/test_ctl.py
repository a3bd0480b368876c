"""End-to-end tests of the ctl socket: tandemctl drives a running unit.

A nat lab (tandemlab.lb_lab) starts with no services at all; everything after that goes through
`tandemctl` (the real binary, --json, against the unit's [ctl] socket):

  - services and backends added over ctl carry real HTTP traffic, spread over every backend;
  - long-lived echo connections keep every byte while their backend is drained and then deleted,
    while new connections avoid it; `conns` lists and counts them by backend, and a flush drops
    exactly the matching entries;
  - `config show` is a TOML file that equals what was built; `config validate` and
    `config reload` of a changed file apply only the difference; a broken file changes nothing;
  - access: a uid not allowed is refused, a read-only one can look but not change; malformed
    JSON, a 1 MiB line, a half-closed client and one that never reads do not disturb the daemon,
    and the daemon counts them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import tempfile
import time
import tomllib
from pathlib import Path

import pytest

import tandemlab as tl

WEB, WEB_NAT = 80, 8080
ECHO = 7000
NOBODY = 65534

_ranges = itertools.count()


@pytest.fixture
def nets():
    base = 60 + 3 * (next(_ranges) % 20)
    return f"10.199.{base}", f"10.199.{base + 1}", f"10.199.{base + 2}.10"


@pytest.fixture
def open_socket_dir():
    """A directory anybody may traverse (the lab's workdir is 0700), for tests that connect as
    another uid."""
    d = Path(tempfile.mkdtemp(prefix="tandem-ctl-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(lab, nets, **kw) -> tuple[tl.LbLab, dict[str, tl.LbBackend]]:
    a, b, vip = nets
    t = tl.lb_lab(lab, "nat", subnet_a=a, subnet_b=b, vip=vip, services=(), **kw)
    servers = {h.name: tl.LbBackend(h.ns, h.name, http=[WEB_NAT], echo=[ECHO], log_name=f"server-{h.name}")
               for h in t.backends}
    return t, servers


def add_services(t: tl.LbLab) -> None:
    u = t.unit
    u.ctl("service", "add", "--name", "web", "--vip", t.vip, "--port", str(WEB), "--protocol", "tcp",
          "--mode", "nat", "--maglev-size", "251")
    u.ctl("service", "add", "--name", "echo", "--vip", t.vip, "--port", str(ECHO), "--protocol", "tcp",
          "--mode", "nat", "--maglev-size", "251")
    for h in t.backends:
        u.ctl("backend", "add", "--service", "web", "--address", h.ip, "--port", str(WEB_NAT))
        u.ctl("backend", "add", "--service", "echo", "--address", h.ip)


def test_services_built_drained_and_deleted_over_ctl(lab, nets):
    t, servers = start(lab, nets)
    u = t.unit
    assert u.ctl("services", "list") == {"services": []}
    # Nothing listens on the VIP yet: the client's SYNs are dropped, not answered.
    assert not tl.http_burst(t.client, t.vip, WEB, 2, timeout=1.0, budget=3.0).ok

    add_services(t)
    listed = {s["name"]: s for s in u.ctl("services", "list")["services"]}
    assert set(listed) == {"web", "echo"}
    assert [(b["address"], b["port"], b["weight"], b["enabled"]) for b in listed["web"]["backends"]] == \
        [(h.ip, WEB_NAT, 1, True) for h in t.backends]
    assert "ctl: backend " in u.log() and " by uid 0 " in u.log(), "changes are logged with who made them"

    burst = tl.http_burst(t.client, t.vip, WEB, 60, tag="added")
    assert len(burst.ok) == 60, burst.failed[:5]
    assert set(burst.by_backend()) == set(servers), burst.by_backend()
    # services list carries each backend's traffic: its connections are the requests it answered.
    name_of = {h.ip: h.name for h in t.backends}
    web = next(s for s in u.ctl("services", "list")["services"] if s["name"] == "web")
    assert {name_of[b["address"]]: b["connections"] for b in web["backends"]} == burst.by_backend(), web
    assert web["connections"] == 60 and web["packets_in"] >= 60 * 4 and web["bytes_out"] > 0, web

    # Long-lived connections, then drain the backend with the most of them and delete another.
    duration = 8.0
    long = tl.EchoClients(t.client, t.vip, ECHO, n=18, interval=0.05, duration=duration, log_name="echo-long")
    opened = long.opened()
    assert not [c for c in opened if c["error"]], opened
    on = {name: sum(1 for c in opened if c["backend"] == name) for name in servers}
    drained, deleted, kept = sorted(on, key=lambda n: -on[n])
    assert on[drained] and on[deleted], on
    ip = {h.name: h.ip for h in t.backends}

    established = u.ctl("connections", "count", "--service", "echo", "--state", "established")["count"]
    assert established == 18, established
    listed = u.ctl("conns", "list", "--service", "echo", "--backend", ip[drained], "--limit", "100")
    assert listed["count"] == on[drained] and len(listed["connections"]) == on[drained], listed
    row = listed["connections"][0]
    assert row["service"] == "echo" and row["backend"] == f"{ip[drained]}:{ECHO}" and row["state"] == "established"
    assert row["client"].startswith(t.client_ip + ":") and row["packets_in"] > 0, row
    limited = u.ctl("conns", "list", "--service", "echo", "--limit", "5")
    assert len(limited["connections"]) == 5 and limited["count"] == 18 and limited["truncated"], limited

    out = u.ctl("backend", "drain", "--service", "echo", "--address", ip[drained])
    assert out["summary"] == f"backend {ip[drained]}:{ECHO} of echo: weight 1 -> 0", out
    u.ctl("backend", "drain", "--service", "web", "--address", ip[drained])
    b1 = tl.http_burst(t.client, t.vip, WEB, 40, tag="drained")
    assert len(b1.ok) == 40 and drained not in b1.by_backend(), b1.by_backend()

    u.ctl("backend", "delete", "--service", "echo", "--address", ip[deleted])
    u.ctl("backend", "delete", "--service", "web", "--address", ip[deleted], "--port", str(WEB_NAT))
    b2 = tl.http_burst(t.client, t.vip, WEB, 30, tag="deleted")
    assert b2.by_backend() == {kept: 30}, b2.by_backend()
    # The deleted backend's connections are still tracked (and forwarded) by the unit.
    assert u.ctl("conns", "count", "--backend", ip[deleted], "--port", str(ECHO))["count"] == on[deleted]

    res = long.result()
    assert not [c for c in res["done"] if c["error"]], res["done"]
    assert all(c["msgs"] == res["rounds"] for c in res["done"]), res
    for name, srv in servers.items():
        server_side = sorted(e["bytes"] for e in srv.log_entries("echo"))
        client_side = sorted(c["bytes"] for c in res["done"] if c["backend"] == name)
        assert server_side == client_side, (name, server_side, client_side)

    # Enable/disable keeps the weight; a disabled backend gets no new connections either.
    u.ctl("backend", "set", "--service", "web", "--address", ip[drained], "--weight", "3")
    u.ctl("backend", "set", "--service", "web", "--address", ip[kept], "--enabled", "false")
    web = next(s for s in u.ctl("services", "list")["services"] if s["name"] == "web")
    assert {b["address"]: (b["weight"], b["enabled"]) for b in web["backends"]} == \
        {ip[drained]: (3, True), ip[kept]: (1, False)}, web
    b3 = tl.http_burst(t.client, t.vip, WEB, 20, tag="disabled")
    assert b3.by_backend() == {drained: 20}, b3.by_backend()

    # Flush: the web connections (closed, in time_wait) go; the echo ones (closed too) stay.
    web_before = u.ctl("conns", "count", "--service", "web")["count"]
    echo_before = u.ctl("conns", "count", "--service", "echo")["count"]
    # Fewer entries than the ~180 requests when the client reused a port whose connection had
    # closed (one entry, reopened: seen 147 once under load); the flush must take exactly them.
    assert web_before >= 100 and echo_before == 18, (web_before, echo_before)
    flushed = u.ctl("conns", "flush", "--service", "web")
    assert flushed["flushed"] == web_before, flushed
    assert u.ctl("conns", "count", "--service", "web")["count"] == 0
    assert u.ctl("conns", "count", "--service", "echo")["count"] == echo_before

    # Refusals change nothing and say why; exit code 1.
    before = u.ctl("services", "list")
    for args, code in [
        (("service", "add", "--name", "web", "--vip", t.vip, "--port", "81", "--protocol", "tcp", "--mode", "nat"),
         "conflict"),
        (("service", "add", "--name", "w2", "--vip", t.vip, "--port", str(WEB), "--protocol", "tcp", "--mode", "nat"),
         "conflict"),
        (("service", "add", "--name", "w3", "--vip", t.unit_north_ip, "--port", "1", "--protocol", "tcp",
          "--mode", "nat"), "conflict"),
        (("service", "set", "--name", "web", "--maglev-size", "250"), "invalid_argument"),
        (("backend", "add", "--service", "nope", "--address", "10.0.0.1"), "not_found"),
        (("backend", "drain", "--service", "web", "--address", "10.0.0.1"), "not_found"),
        (("backend", "set", "--service", "web", "--address", ip[kept], "--weight", "-1"), "invalid_argument"),
        (("conns", "flush"), "invalid_argument"),
    ]:
        p = u.ctl(*args, check=False)
        assert p.returncode == 1, (args, p.returncode, p.stderr)
        assert f"tandemctl: {code}: " in p.stderr, (args, p.stderr)
    assert u.ctl("services", "list") == before
    assert u.ctl("serviceZ", check=False, json_output=False).returncode == 2  # usage

    u.ctl("service", "delete", "--name", "echo")
    assert [s["name"] for s in u.ctl("services", "list")["services"]] == ["web"]
    assert u.running()


def test_config_show_validate_and_reload(lab, nets):
    t, _servers = start(lab, nets)
    u = t.unit
    add_services(t)
    u.ctl("backend", "drain", "--service", "web", "--address", t.backends[0].ip)

    shown = u.ctl("config", "show")
    doc = tomllib.loads(shown["toml"])
    assert doc["unit"]["name"] == t.config.name and doc["ctl"]["socket"] == u.ctl_socket
    web = next(s for s in doc["service"] if s["name"] == "web")
    assert [(b["address"], b["port"], b["weight"]) for b in web["backend"]] == \
        [(h.ip, WEB_NAT, 0 if i == 0 else 1) for i, h in enumerate(t.backends)]
    # What config show prints is a configuration file tandemd accepts as it is.
    saved = lab.workdir / "saved.toml"
    saved.write_text(u.ctl("config", "show", json_output=False))
    assert tl.check_config(saved).returncode == 0
    v = u.ctl("config", "validate", "--path", str(saved))
    assert v["valid"] and v["reload_would_apply"] == [] and v["needs_restart"] == [], v

    # The unit's own file has no services: validating it shows a reload would replace them.
    v = u.ctl("config", "validate", "--path", str(u.config_path))
    assert v["reload_would_apply"] == ["services"], v
    broken = lab.workdir / "broken.toml"
    assert "maglev_size = 251" in shown["toml"], shown["toml"]
    broken.write_text(shown["toml"].replace("maglev_size = 251", "maglev_size = 250", 1))
    p = u.ctl("config", "validate", "--path", str(broken), check=False)
    assert p.returncode == 1 and "invalid_argument" in p.stderr and "must be a prime number" in p.stderr, p.stderr

    # Reload a changed file: one service with two backends, a log level; and an eal change
    # that waits for a restart.
    t.config.services = [tl.ServiceConfig("web", t.vip, port=WEB, mode="nat", maglev_size=251,
                                          backends=[tl.BackendConfig(h.ip, port=WEB_NAT) for h in t.backends[1:]])]
    t.config.log_level = "debug"
    t.config.burst_size = 16
    u.write_config()
    r = u.ctl("config", "reload")
    assert "services: 2 -> 1 service(s)" in r["applied"] and "log level: info -> debug" in r["applied"], r
    assert r["needs_restart"] == ["worker"] and r["failed"] == [], r
    assert u.ctl("log", "level") == {"level": "debug"}
    names = [s["name"] for s in u.ctl("services", "list")["services"]]
    assert names == ["web"]
    burst = tl.http_burst(t.client, t.vip, WEB, 20, tag="reloaded")
    assert len(burst.ok) == 20 and t.backends[0].name not in burst.by_backend(), burst.by_backend()

    # A broken file: refused with its errors, nothing changes.
    u.write_config(text=shown["toml"].replace("[unit]", "[unit]\nbogus = 1", 1))
    p = u.ctl("config", "reload", check=False)
    assert p.returncode == 1 and "unit.bogus: unknown key" in p.stderr, p.stderr
    assert [s["name"] for s in u.ctl("services", "list")["services"]] == ["web"]
    assert u.ctl("log", "level", "--level", "info") == {"level": "info", "summary": "log level debug -> info"}
    assert u.running()


def raw_exchange(path: str, payload: bytes, *, half_close: bool = True, timeout: float = 5.0) -> list[dict]:
    """Send raw bytes on the ctl socket and return every reply line up to EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(payload)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.decode().splitlines()]


def test_access_and_bad_clients(lab, nets, open_socket_dir):
    sock = str(open_socket_dir / "ctl.sock")
    t, _servers = start(lab, nets, ctl_socket=sock,
                        extra={"ctl": {"mode": 0o666, "read_only_users": [str(NOBODY + 1)]}})
    u = t.unit
    assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
    add_services(t)

    # A uid neither allowed nor read-only is refused and logged.
    p = u.ctl("status", check=False, user=NOBODY)
    assert p.returncode == 1 and "tandemctl: forbidden: uid 65534" in p.stderr, p.stderr
    u.wait_log("ctl: refused uid 65534")

    # Malformed JSON, a wrong version, an unknown command, a 1 MiB line, then a good request,
    # all on one connection: each gets its answer, in order.
    replies = raw_exchange(sock, b"{not json\n" + b'{"v":2,"id":1,"cmd":"status"}\n' + b'{"v":1,"id":2,"cmd":"nope"}\n' +
                           b"x" * (1 << 20) + b"\n" + b'{"v":1,"id":3,"cmd":"status"}')
    assert [r.get("error", {}).get("code") for r in replies] == \
        ["parse_error", "unsupported_version", "unknown_command", "line_too_long", None], replies
    assert replies[-1]["id"] == 3 and replies[-1]["result"]["unit"]["name"] == t.config.name

    # A client that never reads while asking for a lot, and one that connects and says nothing:
    # others are still served at once.
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(sock)
    greedy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    greedy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    greedy.connect(sock)
    greedy.setblocking(False)
    request = b'{"v":1,"cmd":"config.show"}\n' * 2000
    sent = 0
    deadline = time.monotonic() + 10
    while sent < len(request) and time.monotonic() < deadline:
        try:
            sent += greedy.send(request[sent:])
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break  # the daemon gave up on it
    t0 = time.monotonic()
    status = u.ctl("status")
    assert time.monotonic() - t0 < 2.0
    assert status["ctl"]["bad_requests"] >= 4, status["ctl"]
    u.wait_log("ctl: dropped uid 0", timeout=10)
    silent.close()
    greedy.close()

    # Traffic still flows and the daemon is alive.
    burst = tl.http_burst(t.client, t.vip, WEB, 20, tag="after-bad-clients")
    assert len(burst.ok) == 20, burst.failed[:3]
    assert u.running()


def test_read_only_user(lab, nets, open_socket_dir):
    sock = str(open_socket_dir / "ctl.sock")
    t, _servers = start(lab, nets, ctl_socket=sock,
                        extra={"ctl": {"mode": 0o666, "read_only_users": [str(NOBODY)]}})
    u = t.unit
    add_services(t)
    listed = u.ctl("services", "list", user=NOBODY)
    assert [s["name"] for s in listed["services"]] == ["web", "echo"]
    assert u.ctl("conns", "count", user=NOBODY)["count"] >= 0
    assert u.ctl("log", "level", user=NOBODY)["level"] == "info"
    for args in (("backend", "drain", "--service", "web", "--address", t.backends[0].ip),
                 ("config", "reload"), ("log", "level", "--level", "debug"), ("conns", "flush", "--service", "web")):
        p = u.ctl(*args, check=False, user=NOBODY)
        assert p.returncode == 1 and "forbidden" in p.stderr, (args, p.stderr)
    u.wait_log("ctl: refused uid 65534 gid 65534")
    assert u.ctl("services", "list") == listed  # nothing changed
