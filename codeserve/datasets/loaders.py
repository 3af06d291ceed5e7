"""Parse each published file format into `Task` records."""

from __future__ import annotations

import ast
import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codeserve.datasets.errors import DatasetError
from codeserve.datasets.mbpp_plus_inputs import deserialize_inputs
from codeserve.datasets.models import Task

MBPP_TEST_SPLIT = range(11, 511)


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a .jsonl, .jsonl.gz or .json (list) file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            if path.name.endswith(".json"):
                yield from json.load(f)
                return
            for line in f:
                if line.strip():
                    yield json.loads(line)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None


def humaneval_tasks(path: Path) -> list[Task]:
    """HumanEval and the infilling files (which add `suffix`; `canonical_solution` is the middle)."""
    return [
        Task(
            task_id=r["task_id"],
            prompt=r["prompt"],
            entry_point=r["entry_point"],
            canonical_solution=r["canonical_solution"],
            test=r["test"],
            suffix=r.get("suffix", ""),
        )
        for r in read_records(path)
    ]


def plus_tasks(path: Path, mbpp: bool) -> list[Task]:
    """HumanEval+ / MBPP+ rows; MBPP+ inputs get their tuple/set/complex types back."""
    tasks = []
    for r in read_records(path):
        # Mbpp/793 stores an empty plus_input as {} rather than [].
        base, plus = (v if isinstance(v, list) else [] for v in (r["base_input"], r["plus_input"]))
        if mbpp:
            base, plus = (
                deserialize_inputs(r["task_id"], base),
                deserialize_inputs(r["task_id"], plus),
            )
        tasks.append(
            Task(
                task_id=r["task_id"],
                prompt=r["prompt"],
                entry_point=r["entry_point"],
                canonical_solution=r["canonical_solution"],
                test=r.get("test") or r.get("assertion", ""),
                base_inputs=base,
                plus_inputs=plus,
                atol=float(r.get("atol") or 0),
                contract=r.get("contract", ""),
            )
        )
    return tasks


def _as_list(value: Any) -> list[str]:
    # Some MBPP mirrors store list fields as their Python repr.
    if isinstance(value, str):
        return list(ast.literal_eval(value)) if value.strip() else []
    return list(value or [])


_CALL = re.compile(r"([A-Za-z_]\w*)\s*\(")


def entry_point_of(code: str, tests: list[str]) -> str:
    """The function the asserts call: the first name called in the tests that `code` defines."""
    defined = set(re.findall(r"^\s*def\s+([A-Za-z_]\w*)", code, flags=re.M))
    for test in tests:
        for name in _CALL.findall(test):
            if name in defined:
                return name
    return next(iter(_CALL.findall(tests[0])), "") if tests else ""


def mbpp_tasks(path: Path, split: str) -> list[Task]:
    """Original MBPP (`split`: "test" = task_id 11-510, or "full") and the sanitized file."""
    tasks = []
    for r in read_records(path):
        number = int(r["task_id"])
        if split == "test" and number not in MBPP_TEST_SPLIT:
            continue
        tests = _as_list(r["test_list"])
        text = r.get("text") or r.get("prompt", "")
        tasks.append(
            Task(
                task_id=f"Mbpp/{number}",
                prompt=text,
                text=text,
                entry_point=entry_point_of(r["code"], tests),
                canonical_solution=r["code"],
                test="\n".join(tests),
                test_list=tests,
                test_setup_code=r.get("test_setup_code", ""),
                challenge_test_list=_as_list(r.get("challenge_test_list", [])),
                test_imports=_as_list(r.get("test_imports", [])),
            )
        )
    return tasks
