"""Checksums: a GGUF is used only once its sha256 (and size, when pinned) match."""

from __future__ import annotations

import hashlib
from pathlib import Path

from codeserve.server.model_sources.errors import ModelSourceError
from codeserve.server.model_sources.progress import Progress
from codeserve.server.model_sources.spec import GgufSource

CHUNK = 4 << 20


def sha256_of(path: Path, label: str | None = None) -> str:
    digest = hashlib.sha256()
    size = path.stat().st_size
    progress = Progress(label, size) if label else None
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if progress:
                progress.update(len(chunk))
    if progress:
        progress.finish()
    return digest.hexdigest()


def check(source: GgufSource, path: Path, actual_sha256: str) -> None:
    """Raise ModelSourceError unless `path` is the file `source` pins."""
    what = source.summary()
    if source.size is not None and path.stat().st_size != source.size:
        raise ModelSourceError(
            f"checksum failure: {what} is {path.stat().st_size:,} bytes, "
            f"expected {source.size:,}; refusing to use it"
        )
    if source.sha256 is not None and actual_sha256 != source.sha256:
        raise ModelSourceError(
            f"checksum failure: {what} has sha256 {actual_sha256}, expected "
            f"{source.sha256}; refusing to use it"
        )
