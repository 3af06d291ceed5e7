"""The README's main command: serve, score through the gateway, summarise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.config import ManagedEngine, Settings
from server.defaults import DEMO_MODELS, default_models
from tests.stack import REPO, Stack, free_port, gateway_env


def test_offline_defaults_are_demo_models(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, hf_hub_offline=True)
    models, demo = default_models(settings)
    assert demo
    assert [m.name for m in models.models] == [name for name, _ in DEMO_MODELS]
    for spec in models.models:
        assert (Path(spec.model) / "codeserve_demo.json").is_file()
        assert isinstance(spec.engine, ManagedEngine) and spec.engine.enforce_eager


@pytest.mark.vllm
def test_quickstart_scores_models_through_the_gateway(real_stack: Stack, tmp_path: Path,
                                                      data_dir: Path) -> None:
    # Reuse the running engines as upstreams: the path under test is serve + eval + summary.
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + "".join(
        f"  - name: {name}\n    model: {real_stack.model_dirs[name]}\n"
        f"    engine: {{kind: upstream, urls: ['{url}'], served_model_name: {name}}}\n"
        for name, url in real_stack.engine_urls.items()))
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "quickstart", "--models-file", str(models),
         "--port", str(free_port()), "--exit", "--limit", "2", "-n", "2",
         "--out", str(tmp_path / "runs"), "--data-dir", str(data_dir)],
        cwd=REPO, env=gateway_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in real_stack.engine_urls:
        assert f"  {name}" in result.stdout and "pass@1" in result.stdout
        assert (tmp_path / "runs" / name / "results.json").is_file()
        assert (tmp_path / "runs" / name / "report.html").is_file()
    assert "failed requests" not in result.stdout
