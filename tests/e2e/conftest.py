"""pytest setup for Tandem's end-to-end lab tests.

Every test here needs root (network namespaces) and the tandemd binary
(<repo>/build/controlplane/tandemd, or $TANDEMD), and is skipped with a clear reason otherwise,
except tests marked `offline` (need neither) and `lab_only` (need root, not tandemd).

Fixtures:
  lab       a tandemlab.Lab, closed after the test whatever happens; when a test fails the
            report gets each process's log and each namespace's `ip addr/neigh/route`.
  subnet    a fresh "10.199.N" prefix per test (the lab's namespaces are private anyway).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tandemlab  # noqa: E402

REQUIRED_TOOLS = ("ip", "ethtool", "ping", "arping")


def pytest_configure(config):
    config.addinivalue_line("markers", "offline: needs neither root nor the tandemd binary")
    config.addinivalue_line("markers", "lab_only: needs root but not the tandemd binary")
    # SIGTERM (e.g. from a CI timeout) -> KeyboardInterrupt, so pytest still runs the fixture
    # finalizers that tear the lab down. The atexit hook in tandemlab is a second line.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def _term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")
        signal.signal(signal.SIGTERM, _term)


def _skip_reason(needs_tandemd: bool) -> str | None:
    if os.geteuid() != 0:
        return "e2e lab tests need root (they create network namespaces)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if missing:
        return f"e2e lab tests need {', '.join(missing)} (run scripts/install-deps)"
    if needs_tandemd:
        binary = tandemlab.default_binary()
        if not binary.exists():
            return (f"tandemd binary not found at {binary}: build first "
                    "(meson setup build && meson compile -C build) or set TANDEMD")
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("offline"):
            continue
        reason = _skip_reason(needs_tandemd=item.get_closest_marker("lab_only") is None)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_sessionstart(session):
    if os.geteuid() == 0 and shutil.which("ip"):
        tandemlab.cleanup_stale()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        lab = getattr(item, "_tandemlab", None)
        if lab is not None and not lab.closed:
            for title, text in lab.diagnostics():
                rep.sections.append((title, text))


@pytest.fixture
def lab(request):
    lab = tandemlab.Lab()
    request.node._tandemlab = lab
    try:
        yield lab
    finally:
        errors = lab.close()
        assert not errors, f"lab teardown problems: {errors}"


_subnets = itertools.cycle(range(1, 251))


@pytest.fixture
def subnet():
    return f"10.199.{next(_subnets)}"
