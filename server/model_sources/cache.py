"""Where converted models live, and how one gets there without leaving half a model behind.

`<cache>/models/<name>-<sha256[:12]>/` holds a converted model; `codeserve_source.json` inside it
is written last and says where the weights came from. A model is built in a temporary directory
beside its final place and renamed into it in one step, under a lock, so a crash, a Ctrl-C or a
second process preparing the same model never leaves (or reads) a half-written one.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MARKER = "codeserve_source.json"


def models_root(cache_dir: Path) -> Path:
    return Path(cache_dir).expanduser() / "models"


def model_dir(cache_dir: Path, name: str, sha256: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return models_root(cache_dir) / f"{slug}-{sha256[:12]}"


def provenance(path: Path) -> dict[str, Any] | None:
    """The provenance record of a complete converted model, or None if `path` is not one."""
    try:
        data = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_provenance(path: Path, record: dict[str, Any]) -> None:
    (path / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@contextmanager
def locked(final: Path) -> Iterator[None]:
    """Hold the lock of one cached model (others preparing it wait here)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(final: Path) -> None:
    """Temporary directories of earlier attempts that died (call with the lock held)."""
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def staging(final: Path) -> Iterator[Path]:
    """A temporary directory beside `final`; the caller builds `<tmp>/out`, which replaces
    `final` in one rename when the block succeeds. On any error everything is removed."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        out = tmp / "out"
        if final.exists():  # an incomplete copy (no marker): replaced, never merged
            shutil.rmtree(final)
        os.replace(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
