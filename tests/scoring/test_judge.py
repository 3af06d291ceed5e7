"""codeserve.scoring.judge and assert_oracle: outputs judged in the harness as the benchmark's
own checks would judge them (each assert form checked against running that assert), and every
way a candidate's records can end."""

from __future__ import annotations

import math
import struct

import pytest

from codeserve.sandbox import calls, values
from codeserve.sandbox.calls import CallOutcome
from codeserve.sandbox.candidate_exec import Digest
from codeserve.sandbox.pool import Job
from codeserve.scoring.assert_oracle import call_modes
from codeserve.scoring.judge import _by_mode, judge
from codeserve.scoring.oracle import Mode, TaskOracle

# (an assert as the checks write it, the canonical output, outputs a candidate might return)
ASSERTS = [
    ("assert candidate(x) == True", True, [True, 1, 1.0, False, "yes", None, [True]]),
    ("assert candidate(x) == [1.0, 2.0]", [1.0, 2.0], [[1, 2], [1.0, 2.0000001], (1.0, 2.0)]),
    ("assert candidate(x)", True, [True, 1, "yes", [], 0, None, [0]]),
    ("assert not candidate(x)", False, [False, 0, "", [1], None, 0.0]),
    ("assert candidate(x) is True", True, [True, 1, 1.0, "True"]),
    ("assert candidate(x) is None", None, [None, 0, False, []]),
    (
        "assert abs(candidate(x) - 0.33) < 1e-6",
        0.33000000000000007,
        [0.33, 0.3300001, 0.33001, 0.34, 1, True, "0.33", None],
    ),
    ("assert abs(candidate(x) - 2.0 / 3.0) <= 1e-6", 2 / 3, [0.6666667, 0.66667, 2 / 3]),
    (
        "assert math.isclose(candidate(x), 4188.790204786391, rel_tol=0.001)",
        4188.790204786391,
        [4188.79, 4190.0, 4200.0, 4188, "x"],
    ),
    (
        "assert set(candidate(x)) == set((4, 5))",
        [4, 5],
        [[5, 4], (4, 5, 5), [4], "45", {4: 1, 5: 2}],
    ),
    ("assert tuple(candidate(x)) == tuple([2, 6])", [2, 6], [(2, 6), [2, 6], [6, 2], "26"]),
    ("assert sorted(candidate(x)) == [1, 2]", [2, 1], [[1, 2], (2, 1), [1, 2, 2]]),
    ("assert candidate(x) == 'ab', 'wrong: ' + str(candidate(x))", "ab", ["ab", "ba", b"ab"]),
]


@pytest.mark.parametrize("line,canonical,outputs", ASSERTS, ids=[a[0] for a in ASSERTS])
def test_each_assert_is_judged_as_it_asserts(
    line: str, canonical: object, outputs: list[object]
) -> None:
    checks = f"def check(candidate):\n    x = 1\n    {line}\n"
    modes, _ = call_modes(checks, {"candidate"})
    mode = modes[3]
    for out in outputs:
        namespace = {"math": math}
        exec(checks, namespace)
        try:
            namespace["check"](lambda x, out=out: out)
            reference = True
        except AssertionError:
            reference = False
        except Exception:
            reference = False
        sent = bool(out) if mode.kind in ("truthy", "falsy") else out
        got = values.decode(values.encode(sent))
        try:
            ours = _by_mode(got, canonical, mode, [])
        except (TypeError, ValueError):
            ours = False
        assert ours == reference, (line, out, mode)


def test_modes_read_from_the_checks() -> None:
    checks = (
        "import math\n"
        "def check(candidate):\n"
        "    assert candidate(1) == 2\n"
        "    assert candidate(2)\n"
        "    assert not candidate(3)\n"
        "    assert candidate(4) is False\n"
        "    assert abs(candidate(5) - 1.5) < 1e-6\n"
        "    assert set(candidate(6)) == {1}\n"
        "    assert candidate(7) == candidate(8) or True\n"
        "    x = candidate(9)\n"
        "assert f(root) == 3\n"
        "for i in range(3):\n"
        "    assert f(i) == i\n"
    )
    modes, sources = call_modes(checks, {"candidate", "f"})
    assert [modes[n].kind for n in range(3, 11)] == [
        "eq",
        "truthy",
        "falsy",
        "is",
        "close",
        "set",
        "eq",
        "eq",
    ]
    assert modes[7].tol == 1e-6 and modes[7].strict
    assert sources[11] == "(root, )" and 13 not in sources  # module level only


def oracle(
    expected: list[object], modes: list[Mode] | None = None, lines: list[int] | None = None
) -> TaskOracle:
    return TaskOracle(
        "T/0",
        "f",
        [[i] for i in range(len(expected))],
        len(expected),
        expected,
        modes=modes,
        lines=lines,
    )


def outcome(
    *records: bytes,
    ended: tuple[str, str] = ("error", "the program exited (status 0) before a verdict"),
    late: bool = False,
) -> CallOutcome:
    return calls.parse(b"".join(records), ended, late)


def value(i: int, v: object) -> bytes:
    return calls.value_record(i, v)


JOB = Job(kind="call", program="", timeout=1.0)


def test_right_outputs_pass_and_the_first_wrong_one_decides() -> None:
    o = oracle([True, False, [1, 2]], [Mode()] * 3, [3, 4, 5])
    assert judge(
        outcome(calls.READY, value(0, True), value(1, False), value(2, [1, 2])), JOB, o
    ).passed
    # == as the asserts compare: 1 == True, (1.0, 2.0) != [1, 2]
    assert judge(
        outcome(calls.READY, value(0, 1), value(1, 0.0), value(2, [1.0, 2.0])), JOB, o
    ).passed
    wrong = judge(outcome(calls.READY, value(0, True), value(1, True), value(2, (1, 2))), JOB, o)
    assert (wrong.status, wrong.input_index) == ("failed", 1)
    assert wrong.detail == "test input 1 (line 4 of the tests): wrong output True"


def test_exceptions_refusals_and_endings() -> None:
    o = oracle([1, 2, 3], [Mode()] * 3, [1, 2, 3])
    raised = judge(
        outcome(calls.READY, value(0, 1), calls.raised_record(1, "e", "KeyError", "KeyError: 2")),
        JOB,
        o,
    )
    assert (raised.status, raised.error_type, raised.input_index) == ("error", "KeyError", 1)
    failed = judge(
        outcome(calls.READY, calls.raised_record(0, "a", "AssertionError", "no")), JOB, o
    )
    assert failed.status == "failed"
    memory = judge(outcome(calls.READY, calls.raised_record(0, "m", "MemoryError", "")), JOB, o)
    assert memory.status == "memory"
    refused = judge(outcome(calls.READY, calls.refused_record(0, "output of type X")), JOB, o)
    assert refused.status == "failed" and "output of type X" in refused.detail
    before = judge(outcome(calls.raised_record(None, "e", "NameError", "no function 'f'")), JOB, o)
    assert (before.status, before.error_type) == ("error", "NameError")
    exited = judge(outcome(calls.READY, value(0, 1)), JOB, o)
    assert (exited.status, exited.error_type, exited.input_index) == ("error", "SystemExit", 1)
    killed = judge(outcome(calls.READY, ended=("killed", "killed by SIGKILL")), JOB, o)
    assert killed.status == "killed" and killed.input_index == 0
    late = judge(
        outcome(
            calls.READY, value(0, 1), ended=("timeout", "wall-clock limit exceeded"), late=True
        ),
        JOB,
        o,
    )
    assert (late.status, late.input_index) == ("timeout", 1)
    # an earlier wrong output decides before any later ending
    early = judge(outcome(calls.READY, value(0, 9), ended=("timeout", "wall-clock")), JOB, o)
    assert (early.status, early.input_index) == ("failed", 0)


@pytest.mark.parametrize(
    "blob",
    [
        b"junk",
        struct.pack(">I", 99) + b"R",
        calls.READY + calls.READY,
        calls.READY + value(1, 2) + value(0, 1),  # out of order
        calls.READY + calls.record(b"V" + struct.pack(">I", 0) + b"Zzz"),  # not a value
        calls.READY + calls.record(b"Q"),
    ],
)
def test_records_that_make_no_sense_never_pass(blob: bytes) -> None:
    result = judge(calls.parse(blob, ("error", "exited")), JOB, oracle([1, 2], [Mode()] * 2))
    assert not result.passed, result


def test_evalplus_rules_when_there_are_no_assert_modes() -> None:
    o = TaskOracle("T/0", "f", [[1], [2]], 1, [1.0, [0.5, 0.25]], atol=0.0)
    ok = outcome(calls.READY, value(0, 1.0 + 1e-9), value(1, [0.5, 0.25 + 1e-8]))
    assert judge(ok, JOB, o).passed  # floats: atol 1e-6 as evalplus
    assert judge(outcome(calls.READY, value(0, 1), value(1, [0.5, 0.25])), JOB, o).passed
    assert not judge(
        outcome(calls.READY, value(0, 1.0 + 1e-9), value(1, (0.5, 0.25 + 1e-8))), JOB, o
    ).passed  # type must match when not exactly equal
    assert o.label(1) == "plus input 0"


def test_big_outputs_are_compared_by_digest() -> None:
    big = ["x" * 1000] * 2000
    o = TaskOracle("T/0", "f", [[0]], 1, [Digest("sha256:" + values.digest(big)[1].hex())])
    assert judge(outcome(calls.READY, value(0, big)), JOB, o).passed
    assert not judge(outcome(calls.READY, value(0, big[:-1] + ["y" * 1000])), JOB, o).passed
    assert not judge(outcome(calls.READY, value(0, "x")), JOB, o).passed
    plain = TaskOracle("T/0", "f", [[0]], 1, [big])  # expected kept whole, output sent hashed
    assert judge(outcome(calls.READY, value(0, big)), JOB, plain).passed


def test_truth_values_travel_for_truthiness_asserts() -> None:
    o = oracle([True, False], [Mode("truthy"), Mode("falsy")])
    assert o.call_case().truths == frozenset({0, 1})
    ok = outcome(
        calls.READY,
        calls.value_record(0, "a match", truth=True),
        calls.value_record(1, None, truth=True),
    )
    assert judge(ok, JOB, o).passed
    assert not judge(
        outcome(
            calls.READY,
            calls.value_record(0, "", truth=True),
            calls.value_record(1, None, truth=True),
        ),
        JOB,
        o,
    ).passed
