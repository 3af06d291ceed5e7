"""Turn a GGUF file into a safetensors model directory vLLM serves (weights, config, tokenizer).

Runs in a child process (`python -m codeserve.server.model_sources.convert GGUF OUT`): it needs
~4 GB of RAM for ~1-2 minutes, which the gateway should not keep. The child prints one line per
stage on stdout (the parent relays them as progress) and exits non-zero on failure, with the
reason as its last stderr line.

transformers dequantizes the GGUF (`from_pretrained(dir, gguf_file=...)`, with the `gguf`
package). The weights are written in float32, exactly as dequantized: CPU engines serve float32,
and a bfloat16 copy would round the quantized values a second time. Two traps of the saved
config are fixed here:
- transformers 5.x marks the loaded model as GGUF-quantized; saved as is, engines would look for
  quantized tensors. The quantizer and `quantization_config` are dropped before saving.
- transformers 5.x writes the rotary base only inside `rope_parameters`; readers of the 4.x
  layout (vLLM's) then fall back to rope_theta 10000. `rope_theta` is written at the top level.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

STAGE = "stage:"


def stage(message: str) -> None:
    print(f"{STAGE} {message}", flush=True)


def _fix_config(out: Path) -> dict[str, Any]:
    path = out / "config.json"
    config = json.loads(path.read_text())
    config.pop("quantization_config", None)
    rope = config.get("rope_parameters") or {}
    if "rope_theta" not in config and "rope_theta" in rope:
        config["rope_theta"] = float(rope["rope_theta"])
    dtype = config.get("dtype") or config.get("torch_dtype")
    if dtype:
        config["torch_dtype"] = dtype  # the 4.x name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def convert(gguf: Path, out: Path) -> dict[str, Any]:
    """Write the model in `gguf` to `out` (a new or empty directory); returns facts about it."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.monotonic()
    stage("reading the tokenizer from the GGUF")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    stage("dequantizing the weights (about a minute)")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    stage("writing safetensors")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    config = _fix_config(out)
    if not (out / "tokenizer.json").is_file():
        raise RuntimeError("the tokenizer was saved without tokenizer.json")
    return {
        "architecture": (config.get("architectures") or ["?"])[0],
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": "float32",
        "rope_theta": config.get("rope_theta"),
        "transformers": transformers.__version__,
        "convert_seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(
            "usage: python -m codeserve.server.model_sources.convert GGUF OUT_DIR", file=sys.stderr
        )
        return 2
    try:
        facts = convert(Path(argv[0]), Path(argv[1]))
    except ImportError as exc:
        print(
            f"converting a GGUF needs transformers, gguf and accelerate (the cpu or gpu "
            f"extra): {exc}",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # the parent shows this line; the traceback is in the log
        import traceback

        traceback.print_exc()
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("result: " + json.dumps(facts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
