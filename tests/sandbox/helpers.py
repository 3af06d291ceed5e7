"""Helpers shared by the sandbox tests: inspect what a pool's workers left running."""

from __future__ import annotations

from pathlib import Path

from codeserve.sandbox.pool import SandboxPool, SandboxSettings

# The zygote's two job loops (codeserve/sandbox/zygote.py): the C one, and the Python one it falls back to.
LOOPS = ["C", "Python"]


def loop_pool(loop: str, **settings: object) -> SandboxPool:
    """A started pool whose workers run the given loop (fails if the C loop was asked for and
    is not what they run: a build that silently fell back must not pass as the C loop)."""
    pool = SandboxPool(SandboxSettings(native=loop == "C", **settings))  # type: ignore[arg-type]
    pool.start()
    assert {w.loop for w in pool._all} == {loop}, "codeserve/sandbox/_zygote_loop.c is not built"
    return pool


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in Path(f"/proc/{pid}/task").iterdir():
            kids += [int(p) for p in (tid / "children").read_text().split()]
    except OSError:
        pass
    return kids


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def worker_trees(pool: SandboxPool) -> dict[int, list[int]]:
    """worker pid -> its live descendants. An idle worker has exactly one: its zygote."""
    return {w.proc.pid: descendants(w.proc.pid) for w in pool._all}


def assert_idle(pool: SandboxPool) -> None:
    """The harness still answers and no candidate process survived anywhere in the pool."""
    assert pool.run(_trivial()).status == "passed"
    for worker, tree in worker_trees(pool).items():
        assert len(tree) == 1, f"worker {worker} has leftover processes {tree}"


def _trivial():
    from codeserve.sandbox.pool import Job

    return Job(program="assert sum(range(4)) == 6\n", timeout=5.0)
