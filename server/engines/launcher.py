"""A tiny parent for one engine process tree, so no engine outlives the gateway.

Usage: python -m codeserve.server.engines.launcher -- COMMAND...

vLLM forks helper processes (engine core, workers). If the gateway is SIGKILLed it cannot clean
up, so this launcher asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), runs the
engine in its own process group, becomes a subreaper so orphaned grandchildren stay in reach, and
tears the whole group down on SIGTERM (graceful, then SIGKILL) or SIGUSR1 (SIGKILL at once, for a
hung engine).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 15.0


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _kill_adopted() -> None:
    """SIGKILL processes re-parented to us (subreaper) that left the engine's process group."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = f.read().rsplit(b")", 1)[1].split()[1].decode()
        except (OSError, IndexError):
            continue
        if ppid == me:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "--" or len(argv) < 2:
        print("usage: python -m codeserve.server.engines.launcher -- COMMAND...", file=sys.stderr)
        return 2
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent:  # the gateway died before the death signal was armed
        return 1

    child = subprocess.Popen(argv[1:], start_new_session=True)
    pgid = child.pid
    stopping = {"sig": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stopping["sig"] = signum
        _kill_group(pgid, signal.SIGKILL if signum == signal.SIGUSR1 else signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, on_signal)

    deadline: float | None = None
    while True:
        try:
            code = child.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        if stopping["sig"] and deadline is None:
            deadline = time.monotonic() + GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            _kill_group(pgid, signal.SIGKILL)
    # The engine leader is gone; take its helpers with it.
    _kill_group(pgid, signal.SIGKILL)
    if sys.platform.startswith("linux"):
        _kill_adopted()
    time.sleep(0.1)
    _reap_all()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
