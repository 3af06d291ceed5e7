"""Find a pinned benchmark file locally or download it into the cache, always checksum-verified."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from codeserve.datasets.errors import DatasetError
from codeserve.datasets.settings import DatasetSettings
from codeserve.datasets.sources import SourceFile

# (url, destination, timeout_s) -> None; raises OSError when the network is unavailable.
Downloader = Callable[[str, Path, float], None]


def urllib_download(url: str, dest: Path, timeout_s: float) -> None:
    """Stream `url` into `dest` (only called for the public release URLs in `sources`)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp, dest.open("wb") as out:
        while chunk := resp.read(1 << 20):
            out.write(chunk)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _verified(path: Path, source: SourceFile) -> Path:
    actual = sha256_of(path)
    if actual != source.sha256:
        raise DatasetError(
            f"{path} has sha256 {actual[:12]}..., expected {source.sha256[:12]}... "
            f"(corrupt or a different release of {source.filename}); delete it or supply the "
            "pinned file"
        )
    return path


def locate(
    source: SourceFile,
    data_dir: Path | None = None,
    settings: DatasetSettings | None = None,
    downloader: Downloader | None = None,
) -> Path:
    """Path of a verified copy of `source`.

    Order: explicit `data_dir`, the cache dir (`DatasetSettings.data_dir`), files shipped in
    installed packages, then a download into the cache (when allowed). Raises `DatasetError`
    with a one-line explanation when none works.
    """
    settings = settings or DatasetSettings()
    cache = settings.data_dir.expanduser()
    candidates = [d / source.filename for d in (data_dir, cache) if d is not None]
    candidates += source.fallback_paths()
    for path in candidates:
        if path.is_file():
            return _verified(path, source)
    if data_dir is not None and not data_dir.is_dir():
        raise DatasetError(f"--data-dir {data_dir} is not a directory")
    if not settings.dataset_download:
        raise _missing(source, data_dir, cache, "downloads are disabled")
    try:
        return _download_into(source, cache, downloader or urllib_download, settings)
    except OSError as exc:
        raise _missing(source, data_dir, cache, f"download failed: {exc}") from None


def _missing(source: SourceFile, data_dir: Path | None, cache: Path, why: str) -> DatasetError:
    where = f"{data_dir} or {cache}" if data_dir else str(cache)
    return DatasetError(
        f"benchmark file {source.filename} not found in {where} and {why}; "
        f"download {source.url} and pass its folder with --data-dir (or put it in {cache})"
    )


def _download_into(
    source: SourceFile, cache: Path, download: Downloader, settings: DatasetSettings
) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{source.filename}.", dir=cache)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        download(source.url, tmp, settings.download_timeout_s)
        _verified(tmp, source)
        final = cache / source.filename
        os.replace(tmp, final)  # atomic: a reader never sees a half-written file
        return final
    finally:
        tmp.unlink(missing_ok=True)
