"""Sandbox worker: `python -m codeserve.sandbox.forkserver`, started and fed by `codeserve.sandbox.pool.SandboxPool`.

Layout per worker (see `codeserve.sandbox.isolation` for the layers):

    harness --pipes--> worker W (host PID ns; cgroups, then unshare user?/mount/net/pid)
                         └─ PID 1 of a fresh PID namespace, which execs the zygote
                              (`codeserve.sandbox.zygote`: a lean interpreter, modules pre-imported)
                              └─ one forked child per candidate (setsid, rlimits, nobody/no caps)

This module only sets up the isolation, which needs ctypes, pathlib and friends; the zygote is
a fresh interpreter without them (see `codeserve.sandbox.zygote` for why its heap size matters).
Wire format both ways: `codeserve.sandbox.frames`.
"""

from __future__ import annotations

import json
import os
import site
import sys
import tempfile

from codeserve.sandbox import isolation
from codeserve.sandbox.frames import HEADER

# The folder the `codeserve` package is in: the zygote imports `codeserve.sandbox` from there.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def python_dirs() -> list[str]:
    """The Python installation candidates run on (what the private root shows of it)."""
    return sorted({sys.base_prefix, sys.prefix, *site.getsitepackages()})


def _read_config() -> dict | None:
    # Unbuffered: a buffered reader could swallow bytes that the exec'd zygote must read.
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n and (chunk := os.read(0, n - len(data))):
            data += chunk
        return data

    head = exact(HEADER.size)
    if len(head) < HEADER.size:
        return None
    n_json, _ = HEADER.unpack(head)
    data = exact(n_json)
    return json.loads(data) if len(data) == n_json else None


def _candidate_uid(report: isolation.LayerReport, drop_uid: int) -> int | None:
    """As real root, candidates run as `drop_uid` if they can still load Python; otherwise
    (and in a user namespace) they keep our uid but lose every capability."""
    uid = os.getuid()
    if os.geteuid() != 0 or report.active("user namespace"):
        report.add("unprivileged candidate", True, f"uid {uid}, no capabilities")
        return None
    if isolation.reachable_by_others(sorted({sys.base_prefix, sys.prefix})):
        report.add("unprivileged candidate", True, f"uid {drop_uid}, no capabilities")
        return drop_uid
    report.add(
        "unprivileged candidate",
        False,
        "uid 0 without capabilities: Python is not readable by other users",
    )
    return None


def exec_zygote(
    cfg: dict,
    report: isolation.LayerReport,
    cgroups: isolation.Cgroups,
    scratch: str | None,
    exe_fd: int,
    root_fd: int,
) -> None:
    """Replace this process by the zygote. The exec goes through file descriptors opened before
    the filesystem was locked down, because a private /tmp may hide this interpreter and our
    sources (e.g. a checkout under /tmp); `-S` keeps site's imports out of the zygote's heap,
    and site-packages are put on its path by hand so candidates can still import them."""
    uid = _candidate_uid(report, cfg["drop_uid"])
    own_scratch = scratch is None
    scratch = scratch or tempfile.mkdtemp(prefix="codeserve-sandbox-")
    workdir = os.path.join(scratch, "work")
    zygote_cfg = {
        **cfg,
        "layers": report.as_dicts(),
        "cgroups": cgroups.dirs,
        "uid": uid,
        "scratch": scratch,
        "own_scratch": own_scratch,
        "root_fd": root_fd,
    }
    boot = (
        f"import sys; sys.path[:0] = ['/proc/self/fd/{root_fd}']; "
        f"sys.path += {site.getsitepackages()!r}; "
        "from codeserve.sandbox.zygote import main; main()"
    )
    # Candidates inherit this environment: nothing of the harness's, HOME = their own dir
    # (LD_BIND_NOW is for the zygote alone: see zygote.main).
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "LD_BIND_NOW": "1",
    }
    os.set_inheritable(root_fd, True)
    os.execve(
        f"/proc/self/fd/{exe_fd}",
        [sys.executable, "-I", "-S", "-c", boot, json.dumps(zygote_cfg)],
        env,
    )


def main() -> int:
    """Worker entry point: read the config frame, isolate, exec the zygote (as PID 1)."""
    cfg = _read_config()
    if cfg is None:
        return 2
    # No PR_SET_PDEATHSIG here: it fires when the harness *thread* that spawned us exits. The
    # zygote exits on EOF of its job pipe instead, which the harness holds until it dies.
    if os.getppid() != cfg["parent_pid"]:
        return 2  # the harness is already gone
    report = isolation.LayerReport()
    report.add("process per candidate", True, "fork of a warm zygote; exec never in the harness")
    disabled = set(cfg["disable"])
    cgroups = isolation.setup_cgroups(
        report, disabled, cfg["name"], cfg["max_pids"], cfg["cgroup_memory_mb"]
    )
    exe_fd = os.open(sys.executable, os.O_PATH)
    root_fd = os.open(ROOT, os.O_PATH | os.O_DIRECTORY)
    isolation.enter_namespaces(report, disabled)
    drop_uid = os.geteuid() == 0 and not report.active("user namespace")
    expose = sorted({sys.base_prefix, sys.prefix}) if drop_uid else None
    private_root = None if "private root" in disabled else python_dirs()
    scratch = isolation.setup_filesystem(
        report,
        "read-only filesystem" not in disabled,
        cfg["tmpfs_mb"],
        expose,
        private_root,
        cfg.get("mask"),
    )
    if report.active("pid namespace"):
        pid = os.fork()  # the first child becomes PID 1 of the new namespace
        if pid:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status) & 0xFF
        isolation.mount_proc(report) if report.active("mount namespace") else report.add(
            "private /proc", False, "no mount namespace"
        )
    else:
        report.add("private /proc", False, "no PID namespace")
    exec_zygote(cfg, report, cgroups, scratch, exe_fd, root_fd)
    return 2  # not reached


if __name__ == "__main__":
    sys.exit(main())
