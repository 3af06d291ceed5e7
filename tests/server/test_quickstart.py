"""The README's main command: serve, score through the gateway, summarise."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from codeserve.server.config import ManagedEngine, Settings
from codeserve.server.defaults import DEMO_MODELS, default_models
from tests.stack import REPO, Stack, free_port, gateway_env, open_request, read_until, wait_until


def test_without_hub_or_package_index_defaults_are_demo_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hub and no package index (pip finds nothing): the real offline default cannot be
    fetched, so the demo models serve. With an index, see test_real_model.py."""
    (tmp_path / "no-wheels").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    settings = Settings(cache_dir=tmp_path, hf_hub_offline=True)
    models, demo = default_models(settings)
    assert demo
    assert [m.name for m in models.models] == [name for name, _ in DEMO_MODELS]
    for spec in models.models:
        assert (Path(spec.model) / "codeserve_demo.json").is_file()
        assert isinstance(spec.engine, ManagedEngine) and spec.engine.enforce_eager


def _upstream_models(stack: Stack, tmp_path: Path) -> Path:
    # Reuse the running engines as upstreams: the path under test is serve + eval + summary.
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        + "".join(
            f"  - name: {name}\n    model: {stack.model_dirs[name]}\n"
            f"    engine: {{kind: upstream, urls: ['{url}'], served_model_name: {name}}}\n"
            for name, url in stack.engine_urls.items()
        )
    )
    return models


def _quickstart(models: Path, port: int, out: Path, data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "codeserve.cli.main",
        "quickstart",
        "--models-file",
        str(models),
        "--port",
        str(port),
        "--out",
        str(out),
        "--data-dir",
        str(data_dir),
        *extra,
    ]


@pytest.mark.vllm
def test_quickstart_scores_models_through_the_gateway(
    real_stack: Stack, tmp_path: Path, data_dir: Path
) -> None:
    result = subprocess.run(
        _quickstart(
            _upstream_models(real_stack, tmp_path),
            free_port(),
            tmp_path / "runs",
            data_dir,
            "--exit",
            "--limit",
            "2",
            "-n",
            "2",
        ),
        cwd=REPO,
        env=gateway_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for name in real_stack.engine_urls:
        assert f"  {name}" in result.stdout and "pass@1" in result.stdout
        assert (tmp_path / "runs" / name / "results.json").is_file()
        assert (tmp_path / "runs" / name / "report.html").is_file()
    assert "failed requests" not in result.stdout


@pytest.mark.vllm
def test_ctrl_c_drains_the_quickstart_gateway(
    real_stack: Stack, tmp_path: Path, data_dir: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            _quickstart(
                _upstream_models(real_stack, tmp_path),
                port,
                tmp_path / "runs",
                data_dir,
                "--limit",
                "1",
                "-n",
                "1",
            ),
            cwd=REPO,
            env=gateway_env(PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # scored; now it keeps serving
            if "still serving" in line:
                break
        sock = open_request(
            base,
            {
                "model": "qwen-demo",
                "prompt": "def f(x):",
                "stream": True,
                "max_tokens": 1900,
                "n": 4,
                "ignore_eos": True,
            },
        )
        received = read_until(sock, b"data: ")
        proc.send_signal(signal.SIGINT)
        # Draining: not ready, new requests refused with the error shape; the stream goes on
        # (it is read only afterwards, so it is still in flight).
        wait_until(
            lambda: httpx.get(base + "/ready", timeout=5).status_code == 503,
            timeout=10,
            interval=0.1,
            what="readiness to fail",
        )
        refused = httpx.post(
            base + "/v1/completions",
            timeout=5,
            json={"model": "qwen-demo", "prompt": "x", "max_tokens": 1},
        )
        assert refused.status_code == 503 and "error" in refused.json(), refused.text
        assert b"data: [DONE]" in read_until(sock, b"data: [DONE]", received)
        sock.close()
        assert proc.wait(timeout=60) == 130  # interrupted, by the shell's convention
        assert "Traceback" not in (tmp_path / "stderr").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
