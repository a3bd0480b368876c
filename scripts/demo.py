#!/usr/bin/python3
"""Tandem in one minute: a client and one tandemd unit in network namespaces.

Builds   [client ns] cli<tag> 10.199.200.1/24 <--veth--> north<tag> [unit ns: tandemd north0 .2,
                                                                    its kernel .3 (AF_XDP)]
then shows ARP, ping, the kernel keeping its own address on the same interface (XDP steering),
the unit's neighbour table and counters (from DPDK telemetry), stops tandemd with SIGTERM and
removes everything. Needs root and a built tandemd
(scripts/demo.sh does both). Ctrl-C or SIGTERM at any point still cleans up.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import tandemlab as tl  # noqa: E402

SUBNET = "10.199.200"
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
_step = 0


def heading(text: str) -> None:
    global _step
    _step += 1
    print(f"\n{BOLD}== {_step}. {text} =={RESET}", flush=True)


def say(text: str = "") -> None:
    print(f"   {text}", flush=True)


def shell(text: str) -> None:
    print(f"   {DIM}$ {text}{RESET}", flush=True)


def table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        say("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", choices=sorted(tl.DRIVERS), default="af_xdp",
                    help="DPDK port type on the unit's veth (default af_xdp)")
    ap.add_argument("--tandemd", type=Path, default=None,
                    help="tandemd binary (default build/controlplane/tandemd or $TANDEMD)")
    args = ap.parse_args()
    if args.tandemd:
        os.environ["TANDEMD"] = str(args.tandemd.resolve())
    if os.geteuid() != 0:
        print("demo: needs root (it creates network namespaces)", file=sys.stderr)
        return 1
    binary = tl.default_binary()
    if not binary.exists():
        print(f"demo: {binary} not found; build first (scripts/demo.sh does)", file=sys.stderr)
        return 1

    tl.install_signal_handlers()          # SIGTERM/SIGHUP unwind like Ctrl-C does
    tl.cleanup_stale(verbose=False)
    t0 = time.monotonic()
    try:
        with tl.Lab() as lab:
            run_demo(lab, args.driver)
            heading("Cleaning up")
        say(f"namespaces, links and files removed; demo took {time.monotonic() - t0:.1f}s")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: lab removed", file=sys.stderr)
        return 130
    except SystemExit as e:
        print("\nstopped by signal: lab removed", file=sys.stderr)
        return int(e.code or 1)
    except (tl.TandemdError, tl.CommandError, tl.TelemetryError, TimeoutError) as e:
        print(f"\ndemo failed: {e}\nlab removed", file=sys.stderr)
        return 1


def show_kernel_sharing(t: tl.ClientUnit) -> None:
    heading(f"XDP steering: the unit's kernel still serves {t.kernel_ip} on the same interface")
    before = t.unit.xdp_counters()
    shell(f"ping -c 3 -i 0.2 {t.kernel_ip}")
    p = tl.ping(t.client, t.kernel_ip, count=3, interval=0.2, wait=1)
    say(f"{p.transmitted} sent, {p.received} received (answered by the kernel, not tandemd)")
    tl.TcpHashServer(t.unit_ns, t.kernel_ip, 8080, log_name="demo-tcp", lifetime=30)  # lab stops it
    r = tl.tcp_hash_exchange(t.client, t.kernel_ip, 8080, 256 * 1024)
    ok = r["server_sha256"] == r["sent_sha256"] == r["echo_sha256"] == tl.expected_sha256(256 * 1024, 1)
    say(f"TCP to {t.kernel_ip}:8080: 256 KiB each way, sha256 {'matches' if ok else 'DIFFERS'} "
        f"on both sides")
    after = t.unit.xdp_counters()
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    say(f"XDP verdicts meanwhile: passed to the kernel {delta.get('passed_ipv4', 0)} IPv4 + "
        f"{delta.get('passed_arp', 0)} ARP, steered to tandemd {delta.get('steered_ipv4', 0)}")


def run_demo(lab: tl.Lab, driver: str) -> None:
    heading("Building the lab: two network namespaces joined by a veth pair")
    steering = driver == "af_xdp"
    t = tl.client_and_unit(lab, driver=driver, subnet=SUBNET, start=False,
                           kernel_host=3 if steering else None)
    rows = [["client", t.client.name, t.client_if, f"{t.client_ip}/24", t.client_mac],
            ["unit", t.unit_ns.name, t.unit_if, f"{t.unit_ip}/24 (tandemd)", t.unit_mac]]
    if steering:
        rows.append(["", "", "", f"{t.kernel_ip}/24 (unit's kernel)", ""])
    table(rows, ["role", "namespace", "interface", "address", "MAC"])
    say("The client is an ordinary Linux stack. On the unit, tandemd (DPDK) answers for its")
    say("fast-path address" + (f"; the unit's kernel keeps {t.kernel_ip} on the same interface."
                              if steering else "."))

    heading(f"Starting tandemd with one {driver.upper()} port (north0)")
    port = t.unit.config.ports[0]
    shell(f"ip netns exec {t.unit_ns.name} tandemd --config {t.unit.config_path.name}")
    say(f"port north0: device {port.device}, address {port.address}")
    started = time.monotonic()
    t.unit.start(timeout=30)
    say(f"ready after {time.monotonic() - started:.1f}s (sd_notify READY=1 received)")

    heading(f"ARP: the client asks who has {t.unit_ip}")
    shell(f"arping -c 3 -I {t.client_if} {t.unit_ip}")
    a = tl.arping(t.client, t.client_if, t.unit_ip, count=3, deadline=5)
    for line in a.output.splitlines():
        if "reply from" in line:
            say(line.strip())
    same = a.reply_macs and set(a.reply_macs) == {t.unit_mac}
    say(f"{a.received}/{a.sent} replied, "
        + (f"all with the port's MAC {t.unit_mac}" if same else f"MACs {sorted(set(a.reply_macs))}"))

    heading(f"Ping: 5 ICMP echo requests to {t.unit_ip}")
    shell(f"ping -c 5 -i 0.2 {t.unit_ip}")
    p = tl.ping(t.client, t.unit_ip, count=5, interval=0.2, wait=1)
    say(f"{p.transmitted} sent, {p.received} received; {p.rtt_summary}")
    n = t.client.neighbour(t.unit_ip, t.client_if)
    if n:
        say(f"client's neighbour table: {t.unit_ip} -> {n.get('lladdr')} "
            f"({', '.join(n.get('state', []))})")

    if steering:
        show_kernel_sharing(t)

    heading("The unit's neighbour table (DPDK telemetry /tandem/neighbours)")
    try:
        t.unit.wait_neighbour(t.client_ip, timeout=3)
    except TimeoutError:
        pass
    rows = [[e.get("port", ""), e.get("address", ""), e.get("mac", ""), e.get("state", ""),
             f"{e.get('age_ms', '')} ms"] for e in t.unit.neighbours()]
    if rows:
        table(rows, ["port", "address", "MAC", "state", "age"])
    else:
        say("(empty)")

    heading("The unit's counters (DPDK telemetry /tandem/counters)")
    c = t.unit.counters()
    table([[pc.get("name", "?"), pc.get("rx_packets", ""), pc.get("rx_bytes", ""),
            pc.get("tx_packets", ""), pc.get("tx_bytes", ""), pc.get("tx_dropped", "")]
           for pc in c["ports"]],
          ["port", "rx pkts", "rx bytes", "tx pkts", "tx bytes", "tx dropped"])
    handled = ", ".join(f"{k}={v}" for k, v in c["handled"].items())
    say(f"handled: {handled}")
    drops = {k: v for k, v in c["drops"].items() if v}
    say("drops:   " + (", ".join(f"{k}={v}" for k, v in drops.items()) if drops
                       else "none (all reasons at 0)"))

    for section, values in c.items():
        if section in ("ports", "handled", "drops", "workers", "other"):
            continue
        nonzero = ", ".join(f"{k}={v}" for k, v in values.items() if v)
        say(f"{section}: {nonzero or 'all 0'}")

    heading("Stopping tandemd (SIGTERM)")
    started = time.monotonic()
    rc = t.unit.stop(timeout=10)
    say(f"exited with status {rc} after {time.monotonic() - started:.1f}s; its last words:")
    block = t.unit.final_counters_log()
    lines = [ln for ln in (block or t.unit.log()).splitlines()
             if not ln.startswith(("libxdp:", "libbpf:", "EAL:", "TELEMETRY:"))]
    for line in (lines if block else lines[-5:])[:12]:
        say(f"{DIM}{line}{RESET}")


if __name__ == "__main__":
    sys.exit(main())
