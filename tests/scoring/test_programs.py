from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from codeserve.datasets import load_benchmark
from codeserve.sandbox.pool import Job, SandboxPool, SandboxSettings
from codeserve.scoring.programs import build_parts, build_program, canonical_completion


@pytest.fixture(scope="module")
def pool() -> Iterator[SandboxPool]:
    with SandboxPool(SandboxSettings(workers=1)) as p:
        yield p


def test_humaneval_program(data_dir: Path) -> None:
    b = load_benchmark("humaneval", data_dir)
    t = b.task("HumanEval/0")
    src = build_program(b, t, "    return True\n")
    assert src == f"{t.prompt}    return True\n\n{t.test}\n\ncheck(has_close_elements)\n"


def test_infilling_program_puts_the_middle_between_prompt_and_suffix(data_dir: Path) -> None:
    b = load_benchmark("humaneval-infill-single", data_dir)
    t = b.tasks[0]
    src = build_program(b, t, "MIDDLE\n")
    assert src.startswith(t.prompt + "MIDDLE\n" + t.suffix)
    assert src.rstrip().endswith(f"check({t.entry_point})")


def test_mbpp_program_has_imports_setup_and_asserts(data_dir: Path) -> None:
    b = load_benchmark("mbpp", data_dir)
    t = b.task("Mbpp/367")
    src = build_program(b, t, "CODE")
    assert src.index("CODE") < src.index(t.test_setup_code) < src.index(t.test_list[0])
    full = load_benchmark("mbpp-full", data_dir)
    with_challenge = next(t for t in full.tasks if t.challenge_test_list)
    assert with_challenge.challenge_test_list[0] in build_program(
        full, with_challenge, "", challenge_tests=True
    )
    assert with_challenge.challenge_test_list[0] not in build_program(full, with_challenge, "")
    sanitized = load_benchmark("mbpp-sanitized", data_dir)
    t = next(t for t in sanitized.tasks if t.test_imports)
    assert t.test_imports[0] in build_program(sanitized, t, "")


def test_plus_programs_are_code_only(data_dir: Path) -> None:
    he = load_benchmark("humaneval+", data_dir)
    t = he.task("HumanEval/0")
    assert build_program(he, t, "BODY") == t.prompt + "BODY"
    mbpp = load_benchmark("mbpp+", data_dir)
    assert build_program(mbpp, mbpp.task("Mbpp/2"), "CODE") == "CODE"


def test_mbpp_367_needs_its_setup_code(data_dir: Path, pool: SandboxPool) -> None:
    b = load_benchmark("mbpp", data_dir)
    t = b.task("Mbpp/367")
    src = build_program(b, t, canonical_completion(b, t))
    assert pool.run(Job(program=src, timeout=10)).status == "passed"
    without_setup = src.replace(t.test_setup_code, "")
    r = pool.run(Job(program=without_setup, timeout=10))
    assert r.status == "error" and r.error_type == "NameError"


@pytest.mark.parametrize(
    "name", ["humaneval", "humaneval-infill-single", "mbpp", "mbpp-sanitized", "humaneval+"]
)
def test_parts_split_the_program_after_the_completion(data_dir: Path, name: str) -> None:
    b = load_benchmark(name, data_dir)
    for t in b.tasks[:20]:
        for completion in ("", "    return None\n", "x = 1"):
            code, tests = build_parts(b, t, completion)
            assert code + tests == build_program(b, t, completion)
            assert completion in code and (code.endswith("\n") or not code or not tests)
            # The checking code is the task's own: the same for every completion.
            assert tests == build_parts(b, t, "something else\n")[1]
            assert (tests == "") == (name == "humaneval+")
