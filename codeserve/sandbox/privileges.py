"""prctl and capability helpers shared by the sandbox worker and its zygote.

Kept apart from `codeserve.sandbox.isolation` so that the zygote (`codeserve.sandbox.zygote`), whose heap every
candidate inherits, imports little for them: with the C job loop built, prctl comes from it,
and ctypes (~250 KB of heap and ten memory mappings, which every candidate's fork and exit
would pay for) is only imported by the Python loop and the worker.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
from typing import Any

try:
    from codeserve.sandbox._zygote_loop import prctl as _native_prctl
except ImportError:  # not built: through ctypes
    _native_prctl = None

SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_SET_CHILD_SUBREAPER = 36


@functools.cache
def libc() -> Any:
    """The C library, through ctypes (imported on first use)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def check(ret: int) -> None:
    if ret == -1:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{errno.errorcode.get(err, err)}: {os.strerror(err)}")


def prctl(option: int, arg: int) -> None:
    if _native_prctl is not None:
        _native_prctl(option, arg)
        return
    import ctypes

    check(
        libc().prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
    )


def die_with_parent() -> None:
    """SIGKILL this process when its parent dies (so no sandbox outlives the harness)."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def forbid_new_privileges() -> str | None:
    """Empty the capability bounding set and set no_new_privs; None when done, else why not.

    Both are inherited by every candidate and irreversible, so no exec'd or setuid binary can
    ever give a candidate capabilities back. The caller keeps its current capabilities, so it
    must not exec afterwards (an exec would leave it none): the zygote does this after its
    own exec, never the worker that execs it."""
    try:
        for cap in range(64):
            try:
                prctl(PR_CAPBSET_DROP, cap)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                break  # past the last capability this kernel knows
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        return str(exc)
    return None


class PrivilegeDropper:
    """Candidate side (the zygote's Python loop; the C loop does the same itself): switch to
    `uid` (as root: e.g. nobody, so file permissions apply), or, when `uid` is None, keep ours
    but clear every capability. Prepared in the zygote so that the forked child runs as little
    Python (touches as few copy-on-write pages) as possible."""

    def __init__(self, uid: int | None) -> None:
        import ctypes

        self.uid = uid if uid is not None and uid != os.geteuid() else None
        # struct __user_cap_header_struct {u32 version; int pid}: _LINUX_CAPABILITY_VERSION_3
        self._header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        self._data = (ctypes.c_uint32 * 6)()  # two zeroed {effective, permitted, inheritable}
        self._args = (
            ctypes.c_long(SYS_CAPSET or -1),
            ctypes.byref(self._header),
            ctypes.byref(self._data),
        )
        self._syscall = libc().syscall

    def __call__(self) -> None:
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)  # leaving uid 0 clears all capabilities
        elif SYS_CAPSET is not None:
            check(self._syscall(*self._args))
