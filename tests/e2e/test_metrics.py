"""End-to-end tests of tandemd's Prometheus endpoint ([metrics] listen, GET /metrics).

The endpoint listens on the unit namespace's loopback, so every request runs inside that
namespace (curl through Netns.run). Each scrape is checked line by line by a small parser of the
text exposition format written here (HELP/TYPE/sample syntax, label escaping, one family per
name, every sample's family declared, no duplicate series), and its counters against the
traffic the test sent:

  - N pings -> icmp_echo_replies_sent grows by exactly N, the port's rx/tx packets by >= N;
  - N HTTP connections through a nat VIP -> lb_new_flows grows by exactly N, conntrack creates
    N entries; per backend, tandem_backend_connections_total grows by exactly the requests that
    backend answered (summing to N), its bytes in by at least what the client sent it, and the
    service's figures are the sum of its backends'; a reload that changes the services counts
    one more Maglev rebuild and keeps every per-backend counter (stats ids are stable);
  - any other path, or another method, is a 404; a taken port stops tandemd at start.
"""

from __future__ import annotations

import itertools
import math
import re
import signal
import time

import pytest

import tandemlab as tl

LISTEN_PORT = 9469
LISTEN = f"127.0.0.1:{LISTEN_PORT}"
URL = f"http://{LISTEN}/metrics"

# --- a strict parser of the Prometheus text format (version 0.0.4) ------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_HELP_RE = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE_RE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")
_SAMPLE_RE = re.compile(rf"^({_NAME})(\{{.*\}})? (\S+)( -?\d+)?$")
_VALUE_RE = re.compile(r"^(NaN|[+-]Inf|[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)$")


class ExpositionError(AssertionError):
    pass


def _parse_labels(text: str, where: str) -> tuple[tuple[str, str], ...]:
    """'{a="x",b="y\\"z"}' -> (("a", "x"), ("b", 'y"z')); strict about quoting and escapes."""
    assert text[0] == "{" and text[-1] == "}"
    body, i, out = text[1:-1], 0, []
    while i < len(body):
        m = re.compile(_LABEL).match(body, i)
        if not m or body[m.end():m.end() + 2] != '="':
            raise ExpositionError(f"{where}: bad label at {body[i:]!r}")
        name, i = m.group(0), m.end() + 2
        if name.startswith("__"):
            raise ExpositionError(f"{where}: reserved label name {name}")
        value = []
        while True:
            if i >= len(body):
                raise ExpositionError(f"{where}: unterminated label value")
            c = body[i]
            if c == "\\":
                nxt = body[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError(f"{where}: bad escape \\{nxt}")
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ExpositionError(f"{where}: raw newline in a label value")
            else:
                value.append(c)
                i += 1
        if any(n == name for n, _ in out):
            raise ExpositionError(f"{where}: label {name} twice")
        out.append((name, "".join(value)))
        if i < len(body):
            if body[i] != ",":
                raise ExpositionError(f"{where}: expected ',' at {body[i:]!r}")
            i += 1
            if i == len(body):
                raise ExpositionError(f"{where}: trailing ','")
    return tuple(out)


def parse_exposition(text: str) -> dict[str, dict]:
    """{name: {"help", "type", "samples": {labels (sorted tuple): float}}}, validating every
    line; raises ExpositionError on the first problem."""
    families: dict[str, dict] = {}
    current: str | None = None
    if text and not text.endswith("\n"):
        raise ExpositionError("the last line does not end in a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n} {line!r}"
        if not line:
            raise ExpositionError(f"{where}: empty line")
        if line.startswith("#"):
            if m := _HELP_RE.match(line):
                name, help_ = m.groups()
                if name in families:
                    raise ExpositionError(f"{where}: family {name} declared twice")
                if re.search(r"\\[^\\n]", help_.replace("\\\\", "")):
                    raise ExpositionError(f"{where}: bad escape in HELP")
                families[name] = {"help": help_, "type": None, "samples": {}}
                current = name
            elif m := _TYPE_RE.match(line):
                name, type_ = m.groups()
                if name != current or families[name]["type"] is not None:
                    raise ExpositionError(f"{where}: TYPE not right after its HELP")
                if families[name]["samples"]:
                    raise ExpositionError(f"{where}: TYPE after samples")
                families[name]["type"] = type_
            else:
                raise ExpositionError(f"{where}: a comment that is neither HELP nor TYPE")
            continue
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ExpositionError(f"{where}: not a sample line")
        name, labels_text, value_text, _ts = m.groups()
        if name != current:
            raise ExpositionError(f"{where}: sample of {name} outside its family "
                                  f"(declared: {name in families})")
        if families[name]["type"] is None:
            raise ExpositionError(f"{where}: sample before the family's TYPE")
        if not _VALUE_RE.match(value_text):
            raise ExpositionError(f"{where}: bad value {value_text!r}")
        labels = tuple(sorted(_parse_labels(labels_text, where))) if labels_text else ()
        if labels in families[name]["samples"]:
            raise ExpositionError(f"{where}: duplicate series")
        value = float(value_text)
        if families[name]["type"] == "counter":
            if not name.endswith("_total"):
                raise ExpositionError(f"{where}: counter not named *_total")
            if math.isnan(value) or value < 0:
                raise ExpositionError(f"{where}: negative or NaN counter")
        families[name]["samples"][labels] = value
    for name, f in families.items():
        if f["type"] is None:
            raise ExpositionError(f"family {name} has HELP but no TYPE")
    return families


def value(families: dict, name: str, **labels: str) -> float:
    key = tuple(sorted(labels.items()))
    try:
        return families[name]["samples"][key]
    except KeyError:
        raise AssertionError(f"no sample {name}{labels}; family: "
                             f"{families.get(name, {}).get('samples')}") from None


# --- HTTP inside the unit's namespace ---------------------------------------------------------

def http(ns: tl.Netns, url: str, *curl_args: str) -> tuple[int, str, dict]:
    """(status, body, headers) of a request made with curl inside ns."""
    cp = ns.run(["curl", "-sS", "--max-time", "5", "-D", "/dev/stderr", *curl_args, url],
                check=False, timeout=15)
    assert cp.returncode == 0, f"curl {url}: exit {cp.returncode}\n{cp.stderr}"
    head = cp.stderr.strip().splitlines()
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:]) if v}
    return status, cp.stdout, headers


def scrape(ns: tl.Netns) -> dict:
    status, body, headers = http(ns, URL)
    assert status == 200, body
    assert headers.get("content-type", "").startswith("text/plain; version=0.0.4"), headers
    return parse_exposition(body)


def scrape_until(ns: tl.Netns, check, timeout: float = 5.0) -> dict:
    """Scrape until check(families) holds (workers publish some figures every 200 ms)."""
    return tl.wait_until(lambda: (lambda f: f if check(f) else None)(scrape(ns)),
                         timeout=timeout, interval=0.1, what="metrics to reach expected values")


HANDLED = "tandem_handled_total"

EXPECTED_FAMILIES = {
    "tandem_build_info": "gauge", "tandem_uptime_seconds": "gauge",
    "tandem_port_packets_total": "counter", "tandem_port_bytes_total": "counter",
    "tandem_port_tx_dropped_total": "counter", "tandem_drops_total": "counter",
    HANDLED: "counter", "tandem_conntrack_connections": "gauge",
    "tandem_conntrack_capacity": "gauge", "tandem_conntrack_memory_bytes": "gauge",
    "tandem_conntrack_created_total": "counter", "tandem_conntrack_expired_total": "counter",
    "tandem_conntrack_insert_failures_total": "counter",
    "tandem_conntrack_lookups_total": "counter", "tandem_neighbour_entries": "gauge",
    "tandem_neighbour_events_total": "counter", "tandem_worker_polls_total": "counter",
    "tandem_worker_busy_polls_total": "counter", "tandem_worker_idle_sleeps_total": "counter",
    "tandem_mempool_in_use": "gauge", "tandem_mempool_available": "gauge",
    "tandem_services": "gauge", "tandem_backends": "gauge",
    "tandem_maglev_rebuilds_total": "counter",
    "tandem_service_connections_total": "counter", "tandem_service_connections_active": "gauge",
    "tandem_service_packets_total": "counter", "tandem_service_bytes_total": "counter",
    "tandem_backend_connections_total": "counter", "tandem_backend_connections_active": "gauge",
    "tandem_backend_packets_total": "counter", "tandem_backend_bytes_total": "counter",
}

TRAFFIC = ("connections_total", "connections_active", "packets_total", "bytes_total")


def traffic(families: dict, kind: str, **labels: str) -> dict[str, float]:
    """One service's (kind "service") or backend's ("backend") figures: {"connections",
    "active", "packets_in", "packets_out", "bytes_in", "bytes_out"}."""
    p = f"tandem_{kind}_"
    return {"connections": value(families, p + "connections_total", **labels),
            "active": value(families, p + "connections_active", **labels),
            "packets_in": value(families, p + "packets_total", direction="in", **labels),
            "packets_out": value(families, p + "packets_total", direction="out", **labels),
            "bytes_in": value(families, p + "bytes_total", direction="in", **labels),
            "bytes_out": value(families, p + "bytes_total", direction="out", **labels)}


# --- offline: the parser and the config writer ------------------------------------------------

@pytest.mark.offline
def test_parser_accepts_good_and_refuses_bad_expositions():
    good = ('# HELP a_total A \\\\ help \\n with escapes.\n# TYPE a_total counter\n'
            'a_total{x="q\\"uo\\\\te\\n",y="2"} 3\na_total{x="other"} 0\n'
            '# HELP g G.\n# TYPE g gauge\ng -1.5e3\ng{k="v"} +Inf\n')
    f = parse_exposition(good)
    assert value(f, "a_total", x='q"uo\\te\n', y="2") == 3
    assert value(f, "g") == -1500 and value(f, "g", k="v") == math.inf
    bad = [
        "a 1\n",                                                   # no family
        "# HELP a A\na 1\n",                                       # no TYPE before sample
        "# HELP a A\n# TYPE a gauge\na 1\na 2\n",                  # duplicate series
        "# HELP a A\n# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",      # label twice
        "# HELP a A\n# TYPE a gauge\na{x=\"\\t\"} 1\n",            # bad escape
        "# HELP a A\n# TYPE a gauge\na{x=1} 1\n",                  # unquoted
        "# HELP a A\n# TYPE a gauge\n# HELP a A\n# TYPE a gauge\n",  # family twice
        "# HELP a A\n# TYPE a counter\na 1\n",                     # counter not *_total
        "# HELP a_total A\n# TYPE a_total counter\na_total -1\n",  # negative counter
        "# HELP a A\n# TYPE a gauge\na one\n",                     # bad value
        "# HELP a A\n# TYPE a gauge\n# HELP b B\n# TYPE b gauge\na 1\n",  # not contiguous
        "# HELP a A\n# TYPE a gauge\na 1",                         # no final newline
        "# a comment\n",
    ]
    for text in bad:
        with pytest.raises(ExpositionError):
            parse_exposition(text)


@pytest.mark.offline
def test_metrics_config_toml():
    import tomllib
    cfg = tl.UnitConfig(ports=[tl.PortConfig("north0", tl.af_xdp("n"), "10.199.1.2/24")],
                        metrics_listen=LISTEN)
    assert tomllib.loads(cfg.to_toml())["metrics"] == {"listen": LISTEN}
    assert "metrics" not in tomllib.loads(tl.UnitConfig().to_toml())


# --- with tandemd -----------------------------------------------------------------------------

def test_check_config_refuses_bad_listen(lab):
    cfg = tl.UnitConfig(ports=[tl.PortConfig("north0", tl.af_xdp("northx"), "10.199.0.2/24")],
                        metrics_listen="127.0.0.1:70000")
    path = lab.workdir / "bad-metrics.toml"
    path.write_text(cfg.to_toml())
    cp = tl.check_config(path)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "metrics.listen: port must be between 1 and 65535, got 70000" in cp.stderr, cp.stderr
    cfg.metrics_listen = "localhost:9469"
    path.write_text(cfg.to_toml())
    cp = tl.check_config(path)
    assert cp.returncode == 1 and "metrics.listen" in cp.stderr, cp.stderr


def test_metrics_follow_pings(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, metrics_listen=LISTEN)
    assert f"metrics: serving {URL}" in t.unit.log()
    tl.ping(t.client, t.unit_ip, count=1)             # ARP settled, first exchange done
    before = scrape_until(t.unit_ns, lambda f: value(f, HANDLED, event="icmp_echo_replies_sent") >= 1)

    # Shape: every family, every drop reason and handled event telemetry knows, zeros included.
    for name, type_ in EXPECTED_FAMILIES.items():
        assert before.get(name, {}).get("type") == type_, f"{name}: {before.get(name)}"
    assert before["tandem_xdp_verdicts_total"]["type"] == "counter"   # af_xdp: steering on
    tel = t.unit.counters()
    reasons = {dict(k)["reason"] for k in before["tandem_drops_total"]["samples"]}
    assert reasons == set(tel["drops"]), reasons ^ set(tel["drops"])
    events = {dict(k)["event"] for k in before[HANDLED]["samples"]}
    assert events == set(tel["handled"]), events ^ set(tel["handled"])
    assert value(before, "tandem_build_info", version=t.unit.info()["version"]) == 1
    assert value(before, "tandem_uptime_seconds") > 0
    assert value(before, "tandem_worker_polls_total", worker="0") >= \
        value(before, "tandem_worker_busy_polls_total", worker="0") > 0
    assert value(before, "tandem_mempool_available", pool="tandem_mbufs") > 0
    assert value(before, "tandem_mempool_in_use", pool="tandem_mbufs") > 0
    assert value(before, "tandem_conntrack_capacity") > 0
    assert value(before, "tandem_neighbour_entries", port="north0") == len(t.unit.neighbours())
    assert value(before, "tandem_services") == 0 and value(before, "tandem_backends") == 0
    assert value(before, "tandem_maglev_rebuilds_total") == 1
    for kind in ("service", "backend"):    # no services: the families without samples
        for suffix in TRAFFIC:
            assert before[f"tandem_{kind}_{suffix}"]["samples"] == {}, (kind, suffix)
    for d in ("rx", "tx"):
        assert value(before, "tandem_port_packets_total", port="north0", direction=d) >= 1

    n = 7
    assert tl.ping(t.client, t.unit_ip, count=n, interval=0.05).received == n
    replies = lambda f: value(f, HANDLED, event="icmp_echo_replies_sent")  # noqa: E731
    after = scrape_until(t.unit_ns, lambda f: replies(f) >= replies(before) + n)
    time.sleep(0.3)
    after = scrape(t.unit_ns)
    assert replies(after) - replies(before) == n
    for d in ("rx", "tx"):
        grown = (value(after, "tandem_port_packets_total", port="north0", direction=d)
                 - value(before, "tandem_port_packets_total", port="north0", direction=d))
        assert grown >= n, (d, grown)
        assert (value(after, "tandem_port_bytes_total", port="north0", direction=d)
                - value(before, "tandem_port_bytes_total", port="north0", direction=d)) >= 98 * n
    # The same figures as the telemetry socket (nothing else is sent meanwhile).
    tel = t.unit.counters()
    assert tel["handled"]["icmp_echo_replies_sent"] == replies(after)
    assert tel["drops"] == {dict(k)["reason"]: v
                            for k, v in after["tandem_drops_total"]["samples"].items()}

    # Only GET /metrics.
    for path in ("/", "/metric", "/metrics/x", "/favicon.ico"):
        status, body, _ = http(t.unit_ns, f"http://{LISTEN}{path}")
        assert status == 404, (path, status, body)
    status, _, _ = http(t.unit_ns, URL, "-X", "POST", "-d", "x=1")
    assert status in (404, 405), status
    status, body, _ = http(t.unit_ns, URL, "-I")
    assert status == 200

    # Outside the unit's namespace nothing listens (loopback is per namespace).
    cp = t.client.run(["curl", "-sS", "--max-time", "2", URL], check=False, timeout=10)
    assert cp.returncode != 0

    # A clean stop while scrapes keep coming.
    scraper = t.unit_ns.spawn(["sh", "-c", f"while :; do curl -s -o /dev/null {URL}; done"],
                              log_name="scraper")
    time.sleep(0.5)
    assert t.unit.stop(timeout=10) == 0
    scraper.stop(timeout=5)
    assert "tandemd stopped" in t.unit.log()


_ranges = itertools.count()


def test_metrics_follow_load_balancing(lab):
    base = 240 + 3 * (next(_ranges) % 4)
    a, b, vip = f"10.199.{base}", f"10.199.{base + 1}", f"10.199.{base + 2}.10"
    svc = tl.ServiceConfig("web", vip, port=80, mode="nat",
                           backends=[tl.BackendConfig(f"{b}.{21 + i}", port=8080) for i in range(3)])
    t = tl.lb_lab(lab, "nat", subnet_a=a, subnet_b=b, vip=vip, services=[svc],
                  conntrack={"capacity": 65536}, metrics_listen=LISTEN)
    for h in t.backends:
        tl.LbBackend(h.ns, h.name, http=[8080], log_name=f"server-{h.name}")
    before = scrape(t.unit_ns)
    assert value(before, "tandem_services") == 1 and value(before, "tandem_backends") == 3
    labels = {h.name: {"service": "web", "backend": f"{h.ip}:8080"} for h in t.backends}
    backends_before = {name: traffic(before, "backend", **l) for name, l in labels.items()}
    service_before = traffic(before, "service", service="web")
    assert value(before, "tandem_maglev_rebuilds_total") == 1
    for port in ("north0", "south0"):
        assert value(before, "tandem_port_tx_dropped_total", port=port) == 0

    n = 40
    burst = tl.http_burst(t.client, vip, 80, n, threads=4)
    assert len(burst.ok) == n, burst.failed[:3]
    flows = lambda f: value(f, HANDLED, event="lb_new_flows")  # noqa: E731
    created = lambda f: value(f, "tandem_conntrack_created_total")  # noqa: E731
    after = scrape_until(t.unit_ns, lambda f: flows(f) >= flows(before) + n
                         and created(f) >= created(before) + n)
    time.sleep(0.3)
    after = scrape(t.unit_ns)
    assert flows(after) - flows(before) == n
    assert created(after) - created(before) == n
    assert value(after, "tandem_conntrack_insert_failures_total", reason="full") == 0
    assert value(after, "tandem_drops_total", reason="lb_no_backend") == 0
    assert value(after, "tandem_conntrack_connections") <= value(after, "tandem_conntrack_created_total")
    for port in ("north0", "south0"):
        for d in ("rx", "tx"):
            assert (value(after, "tandem_port_packets_total", port=port, direction=d)
                    - value(before, "tandem_port_packets_total", port=port, direction=d)) >= 3 * n

    # Per backend: exactly the connections it answered, at least the bytes the client sent it
    # (each request's payload; frames carry headers on top); the service is their sum.
    answered = burst.by_backend()
    sent = {name: 0 for name in labels}
    for r in burst.ok:
        sent[r["backend"]] += len(f"GET /req/{r['i']} HTTP/1.0\r\nHost: {vip}\r\n\r\n")
    grown = {name: {k: traffic(after, "backend", **l)[k] - backends_before[name][k]
                    for k in backends_before[name]} for name, l in labels.items()}
    assert sum(g["connections"] for g in grown.values()) == n, grown
    for name, g in grown.items():
        c = answered.get(name, 0)
        assert g["connections"] == c, (name, g, answered)
        assert g["bytes_in"] >= sent[name], (name, g, sent[name])
        assert g["packets_in"] >= 3 * c and g["packets_out"] >= 2 * c, (name, g)  # handshake, data
        assert g["bytes_out"] >= 100 * c, (name, g)  # each response is ~100 bytes or more
        assert 0 <= g["active"] <= g["connections"], (name, g)
    service_grown = {k: traffic(after, "service", service="web")[k] - service_before[k] for k in service_before}
    for k in service_grown:
        assert service_grown[k] == sum(g[k] for g in grown.values()), (k, service_grown, grown)
    assert (sum(traffic(after, "backend", **l)["active"] for l in labels.values())
            <= value(after, "tandem_conntrack_connections"))
    # The same figures from telemetry (/tandem/services, one service by name): nothing was
    # sent since the scrape. Columns after the name: connections active packets_in packets_out
    # bytes_in bytes_out.
    lines = t.unit.telemetry("/tandem/services,web")
    assert lines[0].split()[:5] == ["service", "web", f"{vip}:80/tcp", "nat"] + \
        [str(int(traffic(after, "service", service="web")["connections"]))], lines
    rows = {r.split()[2]: r.split() for r in lines[1:]}
    assert len(rows) == 3 and all(r[:2] == ["backend", "web"] for r in rows.values()), lines
    for name, l in labels.items():
        figures = traffic(after, "backend", **l)
        row = rows[l["backend"]]
        assert row[3] == "1", row  # weight
        for k, col in (("connections", 4), ("packets_in", 6), ("packets_out", 7), ("bytes_in", 8),
                       ("bytes_out", 9)):
            assert int(row[col]) == figures[k], (name, k, row, figures)
    assert t.unit.telemetry("/tandem/services,nosuch") == []

    # A reload that changes the services publishes a new table: one more rebuild. A new listen
    # address waits for a restart (the endpoint stays where it is).
    t.config.service("web").backends[0].weight = 3
    t.config.metrics_listen = "127.0.0.1:9470"
    log = t.unit.reload(t.config, expect=("services: ", "metrics changed"))
    assert "takes effect at the next restart" in log, log
    f = scrape(t.unit_ns)
    assert value(f, "tandem_maglev_rebuilds_total") == 2
    assert value(f, "tandem_backends") == 3
    # The new table's backends keep their stats ids: no counter went back.
    for name, l in labels.items():
        now, then = traffic(f, "backend", **l), traffic(after, "backend", **l)
        for k in ("connections", "packets_in", "packets_out", "bytes_in", "bytes_out"):
            assert now[k] >= then[k], (name, k, then, now)


def test_taken_port_stops_the_start(lab, subnet):
    t = tl.client_and_unit(lab, subnet=subnet, start=False, metrics_listen=LISTEN)
    holder = t.unit_ns.spawn_python(
        "import socket, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', %d)); s.listen(); time.sleep(120)\n" % LISTEN_PORT,
        log_name="port-holder")
    tl.wait_until(lambda: http_refused_or_hung(t.unit_ns) is False, timeout=5, interval=0.1,
                  what="the port holder to listen")
    with pytest.raises(tl.TandemdError):
        t.unit.start(timeout=20)
    rc = tl.wait_until(lambda: t.unit.process.poll(), timeout=10, interval=0.1,
                       what="tandemd to exit")
    log = t.unit.log()
    assert f"metrics: cannot listen on {LISTEN}: Address already in use" in log, log
    assert rc == 1, rc
    assert "tandemd ready" not in log, log
    holder.stop(timeout=5)


def http_refused_or_hung(ns: tl.Netns) -> bool:
    """False once something accepts connections on LISTEN inside ns."""
    cp = ns.python("import socket, sys\n"
                   "try:\n socket.create_connection(('127.0.0.1', %d), timeout=1).close()\n"
                   "except OSError:\n sys.exit(1)\n" % LISTEN_PORT, check=False, timeout=10)
    return cp.returncode != 0
