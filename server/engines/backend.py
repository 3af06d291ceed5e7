"""Which program serves a managed model: vLLM, or `transformers serve` where vLLM cannot.

vLLM 0.32 has no CodeGen, no XGLM (InCoder) and no T5 (CodeT5+); everything else the seed
families use it serves natively or through its own Transformers backend. `backend: auto` reads
the checkpoint's `config.json` and sends exactly those architectures to `transformers serve`;
tests/server/test_engine_backend.py checks that vLLM still lacks every one of them.
vLLM's own Transformers backend (`--model-impl transformers`) refuses all three in 0.32 (CodeGen
and XGLM "not compatible with vLLM", T5 has no `position_ids`), so it is no way around.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codeserve.server.config import ManagedEngine, ModelSpec

log = logging.getLogger("codeserve.engines")

Backend = Literal["vllm", "transformers"]

# Architectures (config.json `architectures[0]`) vLLM cannot load, served by transformers.
TRANSFORMERS_ONLY = frozenset(
    {
        "CodeGenForCausalLM",  # CodeGen 350M-16B mono/multi
        "XGLMForCausalLM",  # InCoder 1B/6.7B
        "T5ForConditionalGeneration",  # CodeT5+ 220M/770M
        "CodeT5pEncoderDecoderModel",  # CodeT5+ 2B-16B (trust_remote_code)
    }
)
# Encoder-decoder architectures: their output does not continue the prompt.
ENCODER_DECODER = frozenset({"T5ForConditionalGeneration", "CodeT5pEncoderDecoderModel"})


def read_config(weights: str) -> dict[str, Any]:
    """The checkpoint's config.json when `weights` is a local directory, else {}."""
    return read_config_file(Path(weights) / "config.json")


def architecture(config: dict[str, Any]) -> str | None:
    names = config.get("architectures")
    return str(names[0]) if isinstance(names, list) and names else None


def choose_backend(spec: ModelSpec) -> Backend:
    """The backend the models file asks for, or by architecture when it says `auto`."""
    engine = spec.engine
    assert isinstance(engine, ManagedEngine)
    if engine.backend != "auto":
        return engine.backend
    arch = architecture(read_config(spec.weights))
    if arch in TRANSFORMERS_ONLY:
        log.info("[%s] %s is not in vLLM: serving it with transformers", spec.name, arch)
        return "transformers"
    return "vllm"


def context_length(config: dict[str, Any]) -> int | None:
    """The model's context length from its config (transformers serve does not report one)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class EngineProfile:
    """What the gateway must know about a managed model's engine to talk to it."""

    backend: Backend
    # The model name the engine puts in its answers (transformers serve: `<path>@main`).
    reported_name: str
    # The model's own end-of-sequence ids: a transformers request replaces the model's
    # generation config, so they travel with every request.
    eos_ids: list[int]
    encoder_decoder: bool
    context_length: int | None


def _eos_ids(weights: str, config: dict[str, Any]) -> list[int]:
    gen = read_config_file(Path(weights) / "generation_config.json")
    value = gen.get("eos_token_id", config.get("eos_token_id"))
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values if isinstance(v, int)]


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def engine_profile(spec: ModelSpec) -> EngineProfile:
    backend = choose_backend(spec)
    config = read_config(spec.weights)
    return EngineProfile(
        backend=backend,
        # transformers serve canonicalises the model it was given to `<id>@<revision>`.
        reported_name=f"{spec.weights}@main" if backend == "transformers" else spec.name,
        eos_ids=_eos_ids(spec.weights, config),
        encoder_decoder=architecture(config) in ENCODER_DECODER
        or bool(config.get("is_encoder_decoder")),
        context_length=context_length(config),
    )
