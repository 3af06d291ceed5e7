"""Resumable per-request record store (`records.jsonl`).

The first line is a header naming the run's identity; every later line is one `EvalRecord`,
written and flushed as soon as its request ends, so a killed run loses at most the requests in
flight. Reopening the file continues it: a torn last line is cut off, and the candidates already
saved are counted per task so that only the missing ones are requested again.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import orjson
from pydantic import BaseModel, ValidationError

from codeserve.client.protocol import EvalRecord, RunIdentity
from codeserve.common.errors import CliError


class _Header(BaseModel):
    identity: RunIdentity


class RecordStore:
    """`with RecordStore.open(path, identity) as store:` then `store.append(record)`."""

    def __init__(self, path: Path, identity: RunIdentity, records: list[EvalRecord]) -> None:
        self.path = path
        self.identity = identity
        self.records = records
        self._file: IO[bytes] | None = None

    @classmethod
    def open(cls, path: Path, identity: RunIdentity) -> RecordStore:
        records = load_records(path, identity) if path.exists() else []
        store = cls(path, identity, records)
        path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(path)
        store._file = path.open("ab")
        if path.stat().st_size == 0:
            store._write_line(_Header(identity=identity).model_dump(mode="json"))
        return store

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, record: EvalRecord) -> None:
        self._write_line(record.model_dump(mode="json"))
        self.records.append(record)

    def _write_line(self, payload: dict[str, object]) -> None:
        if self._file is None:
            raise RuntimeError("record store is closed")
        self._file.write(orjson.dumps(payload) + b"\n")
        self._file.flush()

    def candidates_done(self) -> Counter[str]:
        return candidates_per_task(self.records)


def candidates_per_task(records: Iterable[EvalRecord]) -> Counter[str]:
    done: Counter[str] = Counter()
    for record in records:
        if record.ok:
            done[record.task_id] += len(record.completions)
    return done


def samples_of(records: Iterable[EvalRecord], n: int) -> list[tuple[str, str]]:
    """(task_id, completion) of the first n saved candidates of each task, in saved order."""
    taken: Counter[str] = Counter()
    samples: list[tuple[str, str]] = []
    for record in records:
        if not record.ok:
            continue
        for completion in record.completions:
            if taken[record.task_id] < n:
                taken[record.task_id] += 1
                samples.append((record.task_id, completion))
    return samples


def load_records(path: Path, identity: RunIdentity | None = None) -> list[EvalRecord]:
    """Validated records of a store; a mismatching identity or a corrupt line is a CliError.
    A torn final line (the process died mid-write) is ignored."""
    # The last piece has no newline after it: empty, or a line that was never fully written.
    lines = path.read_bytes().split(b"\n")[:-1]
    if not lines:
        return []
    try:
        header = _Header.model_validate(orjson.loads(lines[0]))
    except (orjson.JSONDecodeError, ValidationError):
        raise CliError(f"{path}:1: not a codeserve records file (bad header)") from None
    if identity is not None and header.identity != identity:
        raise CliError(
            f"{path} holds samples of another run ({_difference(header.identity, identity)}); "
            "use another --out directory or delete it"
        )
    records = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            records.append(EvalRecord.model_validate(orjson.loads(line)))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            reason = str(exc).splitlines()[0]
            raise CliError(f"{path}:{number}: corrupt record ({reason})") from None
    return records


def _difference(saved: RunIdentity, wanted: RunIdentity) -> str:
    fields = [
        f"{name}: saved {getattr(saved, name)!r}, now {getattr(wanted, name)!r}"
        for name in RunIdentity.model_fields
        if getattr(saved, name) != getattr(wanted, name)
    ]
    return "; ".join(fields)


def _cut_torn_tail(path: Path) -> None:
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
            handle.flush()
            os.fsync(handle.fileno())
