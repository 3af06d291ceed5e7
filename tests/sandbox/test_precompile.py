"""Programs and checking code compiled by the harness for the sandbox (codeserve/sandbox/precompile.py)."""

from __future__ import annotations

import marshal
import subprocess
import sys
import warnings

import pytest

from codeserve.sandbox import precompile
from codeserve.sandbox.candidate_exec import FILENAME, compile_alone

TESTS = "assert f(1) == 2\n"
PROGRAM = "def f(x):\n    return x + 1\n"


def test_a_program_is_compiled_as_its_process_would() -> None:
    data = precompile.program_code(PROGRAM, TESTS, precompile.tests_code(TESTS))
    assert data and marshal.loads(data) == compile_alone(PROGRAM)
    assert marshal.loads(data).co_filename == FILENAME
    assert precompile.program_code(PROGRAM, "", b"")  # no tests: nothing to compile it with


@pytest.mark.parametrize(
    "program,tests",
    [
        ("def broken(:\n", TESTS),  # its process reports the error, as before
        ("from __future__ import annotations\n", TESTS),  # the flag must reach the tests too
        ('s = """abc\n', '"""\nassert s\n'),  # only compiles with the tests
        ("x = 1\n", "assert (\n"),  # the tests do not compile alone
        ("x = 1\n" + "#" * precompile.MAX_SOURCE_CHARS, TESTS),  # too big to hold the harness up
        (
            "x = " + "-" * 100_000 + "1\n",
            TESTS,
        ),  # the parser's MemoryError stays out of the harness
    ],
)
def test_what_does_not_compile_cleanly_is_left_to_the_candidates_process(
    program: str, tests: str
) -> None:
    assert precompile.program_code(program, tests, precompile.tests_code(tests)) == b""


def test_a_warning_stays_out_of_the_harness() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert (
            precompile.program_code("assert (1, 'why')\n", TESTS, precompile.tests_code(TESTS))
            == b""
        )
    assert caught == []


def test_another_threads_warning_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def compile_and_meet_a_warning(source: str) -> object:
        warnings.warn_explicit("elsewhere", UserWarning, "other.py", 7)
        return compile_alone(source)

    monkeypatch.setattr(precompile, "compile_alone", compile_and_meet_a_warning)
    with pytest.warns(UserWarning, match="elsewhere"):
        assert precompile.program_code(PROGRAM, "", b"")


def test_asserts_survive_a_harness_run_with_O() -> None:
    check = (
        "import marshal; from codeserve.sandbox import precompile; "
        "exec(marshal.loads(precompile.tests_code('assert False')))"
    )
    run = subprocess.run([sys.executable, "-O", "-c", check], capture_output=True, text=True)
    assert "AssertionError" in run.stderr
