"""The resumable record store."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeserve.client.protocol import EvalRecord, RunIdentity
from codeserve.client.records import RecordStore, candidates_per_task, load_records, samples_of
from codeserve.common.errors import CliError

IDENTITY = RunIdentity(
    benchmark="humaneval",
    dataset_sha256="abc",
    model="m",
    prompt_format="humaneval",
    temperature=0.2,
    top_p=0.95,
    max_tokens=64,
)


def record(task: str, completions: list[str], error: str | None = None) -> EvalRecord:
    return EvalRecord(
        task_id=task,
        session="s1",
        n=len(completions) or 1,
        texts=[] if error else completions,
        completions=[] if error else completions,
        sent_at=1.0,
        latency_s=0.5,
        error=error,
    )


def test_records_are_on_disk_as_soon_as_appended_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "out" / "records.jsonl"
    store = RecordStore.open(path, IDENTITY)
    store.append(record("T/0", ["a", "b"]))
    # Not closed: a killed process leaves exactly this on disk.
    assert [r.completions for r in load_records(path, IDENTITY)] == [["a", "b"]]
    store.append(record("T/1", [], error="HTTP 400: too long"))
    store.close()
    with RecordStore.open(path, IDENTITY) as again:
        assert len(again.records) == 2
        again.append(record("T/0", ["c"]))
        assert again.candidates_done() == {"T/0": 3}
    assert len(path.read_text().splitlines()) == 4  # header + 3 records


def test_a_torn_last_line_is_dropped_and_appending_continues_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    with RecordStore.open(path, IDENTITY) as store:
        store.append(record("T/0", ["a"]))
    with path.open("ab") as handle:
        handle.write(b'{"task_id": "T/1", "sess')
    with RecordStore.open(path, IDENTITY) as store:
        assert [r.task_id for r in store.records] == ["T/0"]
        store.append(record("T/1", ["b"]))
    assert [r.task_id for r in load_records(path)] == ["T/0", "T/1"]


def test_another_runs_store_and_corrupt_lines_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    RecordStore.open(path, IDENTITY).close()
    other = IDENTITY.model_copy(update={"model": "other", "temperature": 0.8})
    with pytest.raises(CliError, match="another run.*model: saved 'm', now 'other'; temperature"):
        RecordStore.open(path, other)
    with path.open("ab") as handle:
        handle.write(b"not json\n")
    with pytest.raises(CliError, match=r"records.jsonl:2: corrupt record"):
        load_records(path, IDENTITY)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1]\n")
    with pytest.raises(CliError, match="bad.jsonl:1: not a codeserve records file"):
        load_records(bad)


def test_samples_take_the_first_n_successful_candidates_per_task() -> None:
    records = [
        record("A", ["a1", "a2"]),
        record("B", [], error="x"),
        record("A", ["a3"]),
        record("B", ["b1"]),
    ]
    assert candidates_per_task(records) == {"A": 3, "B": 1}
    assert samples_of(records, 2) == [("A", "a1"), ("A", "a2"), ("B", "b1")]


def test_records_written_before_the_shared_record_still_load(tmp_path: Path) -> None:
    """Until the request record was shared with the load tester, the HTTP status was saved as
    `status_code`; it is `status` now."""
    path = tmp_path / "records.jsonl"
    RecordStore.open(path, IDENTITY).close()
    with path.open("ab") as handle:
        handle.write(
            b'{"n": 1, "texts": ["a"], "finish_reasons": ["stop"], "sent_at": 1.0, '
            b'"ttft_s": null, "latency_s": 0.5, "prompt_tokens": 3, "completion_tokens": 1, '
            b'"attempts": 1, "status_code": 200, "error": null, "task_id": "T/0", '
            b'"session": "s0", "completions": ["a"]}\n'
        )
    (old,) = load_records(path, IDENTITY)
    assert old.status == 200 and old.ok and old.completions == ["a"]
