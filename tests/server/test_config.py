"""Models file validation: errors name the field and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeserve.common.errors import ConfigError
from codeserve.server.config import (
    ManagedEngine,
    UpstreamEngine,
    load_models_file,
    parse_models_file,
)

GOOD = """\
models:
  - name: qwen
    model: Qwen/Qwen2.5-Coder-1.5B
    engine:
      kind: managed
      max_model_len: 4096
      extra_args: ["--enable-prefix-caching"]
      env: {VLLM_CPU_KVCACHE_SPACE: "1"}
  - name: deepseek
    model: deepseek-ai/deepseek-coder-1.3b-base
    engine:
      kind: upstream
      urls: ["http://10.1.2.3:8000", "http://10.1.2.4:8000"]
"""


def test_valid_file_parses() -> None:
    models = parse_models_file(GOOD).models
    assert [m.name for m in models] == ["qwen", "deepseek"]
    assert isinstance(models[0].engine, ManagedEngine)
    assert models[0].engine.extra_args == ["--enable-prefix-caching"]
    assert isinstance(models[1].engine, UpstreamEngine) and len(models[1].engine.urls) == 2
    assert models[0].upstream_model_name == "qwen"  # managed engines serve the public name
    assert models[1].upstream_model_name == "deepseek-ai/deepseek-coder-1.3b-base"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("max_model_len: 4096", "max_model_len: -1"),
            "line 6 models.0.engine.max_model_len",
        ),
        (GOOD.replace("kind: upstream", "kind: elsewhere"), "line 12 models.1.engine"),
        (
            GOOD.replace('urls: ["http://10.1.2.3:8000", "http://10.1.2.4:8000"]', "urls: [nope]"),
            "line 13 models.1.engine.urls.0",
        ),
        (GOOD.replace("  - name: deepseek", "  - name: qwen"), "models: Value error, duplicate"),
        (
            GOOD.replace("    model: Qwen/Qwen2.5-Coder-1.5B\n", ""),
            "line 2 models.0: Value error, `model` (HF id, local directory or .gguf file) or `gguf` is "
            "required",
        ),
        (
            GOOD.replace("      max_model_len: 4096", "      max_model_lenn: 4096"),
            "line 6 models.0.engine.max_model_lenn: Extra inputs are not permitted",
        ),
        ("models: [", "invalid YAML"),
        ("models: []", "models: List should have at least 1 item"),
        ("", "(top level)"),
    ],
)
def test_errors_name_field_and_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_models_file(text, "models.yaml")
    message = str(info.value)
    assert message.startswith("models.yaml:"), message
    assert expected in message, message
    assert "\n" not in message


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read models file"):
        load_models_file(tmp_path / "absent.yaml")
