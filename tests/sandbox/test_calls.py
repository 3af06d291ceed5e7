"""Call jobs (codeserve/sandbox/calls.py): what a candidate's process reports, under both loops,
and how the pool keeps expected outputs and checking code away from them."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

from codeserve.sandbox import values
from codeserve.sandbox.calls import CallCase, CallOutcome, case_bytes
from codeserve.sandbox.pool import Job, RunResult, SandboxPool
from tests.sandbox.helpers import LOOPS, loop_pool


@pytest.fixture(scope="module", params=LOOPS)
def pool(request: pytest.FixtureRequest) -> Iterator[SandboxPool]:
    with loop_pool(request.param, workers=1) as p:
        p.register_judge("raw", lambda outcome, job: RunResult(status="passed", calls=outcome))
        yield p


def run(
    pool: SandboxPool, program: str, case: CallCase, inline: bool = True, **job: object
) -> CallOutcome:
    if inline:
        result = pool.run(
            Job(
                kind="call",
                program=program,
                case=case_bytes(case),
                judge="raw",
                timeout=job.pop("timeout", 5.0),
                **job,
            )
        )  # type: ignore[arg-type]
    else:
        pool.register_bundle("calls-test", pickle.dumps(case))
        result = pool.run(
            Job(
                kind="call",
                program=program,
                bundle="calls-test",
                judge="raw",
                timeout=job.pop("timeout", 5.0),
                **job,
            )
        )  # type: ignore[arg-type]
    assert result.calls is not None, result
    return result.calls


def outputs(outcome: CallOutcome) -> list[object]:
    return [
        values.decode(a.data) if a.kind in "VPB" else (a.kind, a.error_type, a.detail)
        for a in outcome.answers
    ]


DOUBLE = "def f(x):\n    return [x, x * 2]\n"
CASE = CallCase("f", [[1], ["ab"], [b"\xff\x00"]])


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize(
    "program",
    [
        DOUBLE,
        # compiled in the candidate's process (it warns), so run by the Python path under both loops
        "assert (1, 'always true')\n" + DOUBLE,
    ],
)
def test_outputs_come_back_as_plain_data(pool: SandboxPool, program: str, inline: bool) -> None:
    outcome = run(pool, program, CASE, inline)
    assert outcome.ready and outcome.failure is None and outcome.malformed is None
    assert outputs(outcome) == [[1, 2], ["ab", "abab"], [b"\xff\x00", b"\xff\x00\xff\x00"]]
    assert outcome.ended[0] == "error"  # it exits without a word: only its records speak


def test_what_a_call_raises_or_returns_that_is_not_data(pool: SandboxPool) -> None:
    program = (
        "class A:\n    pass\n"
        "def f(x):\n    if x == 2:\n        raise KeyError(x)\n"
        "    return A() if x == 3 else x\n"
    )
    assert outputs(run(pool, program, CallCase("f", [[1], [2], [3]]))) == [
        1,
        ("E", "KeyError", "KeyError: 2"),
    ]  # the first that does not answer ends the job
    refused = run(pool, program, CallCase("f", [[3]])).answers[0]
    assert refused.kind == "U" and "type A" in refused.detail
    failed = run(pool, "print('hi')\n1 / 0\n", CASE)
    assert not failed.ready and failed.failure[1] == "ZeroDivisionError"  # type: ignore[index]
    assert failed.output == "hi\n"
    missing = run(pool, "def g(x):\n    return x\n", CASE)
    assert missing.failure == ("e", "NameError", "the program defines no function 'f'")


def test_set_up_code_and_inputs_given_as_source(pool: SandboxPool) -> None:
    """MBPP runs its imports and set-up code after the program; objects they build are passed
    as source (as MBPP 367's trees)."""
    case = CallCase(
        "depth",
        [[], [3]],
        setup="import math\nclass T:\n    pass\nroot = T()\nroot.kid = T()\n",
        exprs={0: "(root, )"},
    )
    program = (
        "def depth(node):\n    if isinstance(node, int):\n        return math.floor(node)\n"
        "    return 1 + (depth(node.kid) if hasattr(node, 'kid') else 0)\n"
    )
    assert outputs(run(pool, program, case)) == [2, 3]


def test_truth_values_and_presence(pool: SandboxPool) -> None:
    program = "import re\ndef f(s):\n    return re.match('a', s)\n"
    case = CallCase("f", [["abc"], ["xyz"]], truths=frozenset({0, 1}))
    assert outputs(run(pool, program, case)) == [True, False]
    present = run(pool, program, CallCase("f", [["abc"], ["xyz"]], presence=True))
    assert [a.kind for a in present.answers] == ["P", "P"] and outputs(present) == [True, False]


def test_slices_and_per_input_limits(pool: SandboxPool) -> None:
    slow = "import time\ndef f(x):\n    time.sleep(x)\n    return x\n"
    case = CallCase("f", [[0], [0.05], [1.5], [0]])
    assert outputs(run(pool, slow, case, inputs=(1, 2))) == [0.05]
    assert [a.position for a in run(pool, slow, case, inputs=(3, 4)).answers] == [3]
    assert run(pool, slow, case, inputs=(2, 2)).answers == []
    late = run(pool, slow, case, limits=(1.0, 1.0, 0.5, 1.0))
    assert late.input_timeout and outputs(late) == [0, 0.05], late.ended
    # without limits only the wall clock counts
    whole = run(pool, slow, case, timeout=5.0)
    assert not whole.input_timeout and outputs(whole) == [0, 0.05, 1.5, 0]
    assert run(pool, slow, case, timeout=1.0).ended == ("timeout", "wall-clock limit exceeded")


def test_a_worker_sent_checking_code_is_replaced_before_a_call_job(pool: SandboxPool) -> None:
    assert pool.run(Job(program="x = 1\n", tests="assert x == 1\n", timeout=5.0)).passed
    tainted = pool._all[0]
    assert tainted.tainted
    assert outputs(run(pool, DOUBLE, CASE))[0] == [1, 2]
    assert pool._all[0] is not tainted and not pool._all[0].tainted
