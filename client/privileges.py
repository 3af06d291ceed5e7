"""prctl and capability helpers shared by the sandbox worker and its zygote.

Kept apart from `client.isolation` so that the zygote (`client.zygote`), whose heap every
candidate inherits, imports nothing but ctypes for them.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import signal

SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(platform.machine())
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
PR_SET_CHILD_SUBREAPER = 36

libc = ctypes.CDLL(None, use_errno=True)


def check(ret: int) -> None:
    if ret == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{errno.errorcode.get(err, err)}: {os.strerror(err)}")


def prctl(option: int, arg: int) -> None:
    check(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                     ctypes.c_ulong(0), ctypes.c_ulong(0)))


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


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class PrivilegeDropper:
    """Candidate side: switch to `uid` (as root: e.g. nobody, so file permissions apply), or,
    when `uid` is None, keep ours but clear every capability. Prepared in the zygote so that
    the forked child runs as little Python (touches as few copy-on-write pages) as possible."""

    def __init__(self, uid: int | None) -> None:
        self.uid = uid if uid is not None and uid != os.geteuid() else None
        self._header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
        self._data = (ctypes.c_uint32 * 6)()  # two zeroed {effective, permitted, inheritable}
        self._args = (ctypes.c_long(SYS_CAPSET or -1), ctypes.byref(self._header),
                      ctypes.byref(self._data))

    def __call__(self) -> None:
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)  # leaving uid 0 clears all capabilities
        elif SYS_CAPSET is not None:
            check(libc.syscall(*self._args))
