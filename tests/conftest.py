"""Shared test fixtures. Benchmark data comes from ../shared/data (beside the clone) or
$CODESERVE_TEST_DATA; the product itself never looks there."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    override = os.environ.get("CODESERVE_TEST_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _shared_data_dir()
    if not (path / "HumanEval.jsonl.gz").exists():
        pytest.fail(f"benchmark data not found in {path}; set CODESERVE_TEST_DATA")
    return path
