"""Running commands with bounded time, and polling helpers."""

from __future__ import annotations

import shlex
import subprocess
import time
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0


class CommandError(RuntimeError):
    """A command exited non-zero (or timed out); carries its output."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str,
                 note: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        what = note or f"exit status {returncode}"
        msg = f"command failed ({what}): {shlex.join(self.argv)}"
        if stderr.strip():
            msg += f"\n--- stderr ---\n{stderr.rstrip()}"
        if stdout.strip():
            msg += f"\n--- stdout ---\n{stdout.rstrip()}"
        super().__init__(msg)


def run(argv: Sequence[str], *, check: bool = True, timeout: float = DEFAULT_TIMEOUT,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run argv to completion (stdin is /dev/null unless input is given), capturing text output.

    Every call is bounded by timeout; a timeout raises CommandError whatever check says.
    """
    argv = [str(a) for a in argv]
    try:
        cp = subprocess.run(argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise CommandError(argv, None, out, err, note=f"timed out after {timeout:g}s") from None
    if check and cp.returncode != 0:
        raise CommandError(argv, cp.returncode, cp.stdout, cp.stderr)
    return cp


def wait_until(fn: Callable[[], T], *, timeout: float, interval: float = 0.2,
               what: str = "condition") -> T:
    """Call fn until it returns a truthy value and return that value.

    Raises TimeoutError after `timeout` seconds. Exceptions from fn are treated as "not yet" and
    the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - polling: remember and retry
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
