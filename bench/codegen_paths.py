"""Which engine serves CodeGen best (issue #18): `transformers serve` on the CodeGen checkpoint, as
`backend: auto` does today, or vLLM on the same weights converted to GPT-J layout.

CodeGen is GPT-J with the three attention projections fused into one `qkv_proj`, whose rows are
laid out for the `mp_num` (4) TPU cores it was trained on: each core's block holds its heads'
query, value and key rows, in that order (transformers' modeling_codegen.py reshapes the output
to (mp_num, 3 * local_dim) and splits it query, value, key). Everything else maps by name and the
rotary embedding is the same (GPT-J's rotate-every-two over the first `rotary_dim` of each head).

    python -m bench.codegen_paths [--out DIR]

builds the CodeGen demo model, converts it, checks the conversion is exact in transformers (same
logits, same greedy tokens), then serves each through the gateway, one engine at a time: start-up
to ready, tokens/s of one greedy 64-token request, aggregate tokens/s of 8 sampled 64-token
candidates (n=8 on vLLM; 8 concurrent n=1 requests on transformers serve, which refuses n>1),
and whether greedy text through the gateway matches. Load averages are printed beside each figure.
The converter lives here, not in the product, until the measurement says it should.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.real_gateway import free_port, gateway, load_average

PROMPTS = [
    "def add(a, b):\n    ",
    "import os\n\nclass Config:\n",
    "# sort a list of numbers\ndef sort(xs):\n",
]
TOKENS = 64
CANDIDATES = 8
# CodeGen-350M's shape (16 heads: four per mp_num block, so the split's head order is tested too),
# with random weights and the demo's tokenizer (vocabulary 4096, not 51200).
SHAPE_350M = {
    "n_embd": 1024,
    "n_layer": 20,
    "n_head": 16,
    "n_inner": 4096,
    "rotary_dim": 32,
    "n_positions": 2048,
    "n_ctx": 2048,
}


def is_weight_file(name: str) -> bool:
    return name == "config.json" or name.endswith((".safetensors", ".safetensors.index.json"))


def build_codegen(out: Path, shape: str) -> Path:
    """The CodeGen demo model, or (`350m`) the same tokenizer on a CodeGen-350M-shaped model."""
    from codeserve.server.demo_models import build_demo_model

    if (out / "config.json").is_file():
        return out
    build_demo_model(out, "codegen")
    if shape == "350m":
        import torch
        from transformers import CodeGenConfig, CodeGenForCausalLM

        config = CodeGenConfig.from_pretrained(str(out))
        for key, value in SHAPE_350M.items():
            setattr(config, key, value)
        torch.manual_seed(0)
        model = CodeGenForCausalLM(config).eval()
        for path in out.iterdir():
            if is_weight_file(path.name):
                path.unlink()
        model.save_pretrained(str(out))
    return out


def split_qkv(qkv: Any, n_embd: int, mp_num: int) -> tuple[Any, Any, Any]:
    """CodeGen's fused (3 * n_embd, n_embd) `qkv_proj` weight as GPT-J's q, k, v weights.

    Rows are (mp_num, [query | value | key], local_dim); within a block the heads of that core
    follow each other, and the model merges heads core-major, so each projection is its rows of
    every core concatenated in core order."""
    local = n_embd // mp_num
    blocks = qkv.reshape(mp_num, 3, local, qkv.shape[-1])
    query, value, key = blocks[:, 0], blocks[:, 1], blocks[:, 2]
    return (
        query.reshape(n_embd, -1).contiguous(),
        key.reshape(n_embd, -1).contiguous(),
        value.reshape(n_embd, -1).contiguous(),
    )


def naive_split_qkv(qkv: Any, n_embd: int, mp_num: int) -> tuple[Any, Any, Any]:
    """The wrong split (q, k, v as three contiguous thirds): the exactness check's control."""
    return qkv[:n_embd], qkv[n_embd : 2 * n_embd], qkv[2 * n_embd :]


def convert_codegen_to_gptj(
    src: Path, dst: Path, mp_num: int = 4, split: Callable[..., Any] = split_qkv
) -> Path:
    """Write `src` (a CodeGenForCausalLM checkpoint in safetensors) to `dst` as a
    GPTJForCausalLM checkpoint with the same weights; tokenizer files are copied as they are.

    `mp_num` is 4 for every released CodeGen checkpoint (transformers hard-codes it)."""
    from safetensors.torch import load_file, save_file

    config = json.loads((src / "config.json").read_text())
    if config.get("architectures") != ["CodeGenForCausalLM"]:
        raise ValueError(f"{src} is not a CodeGenForCausalLM checkpoint")
    n_embd, n_head = int(config["n_embd"]), int(config["n_head"])
    if n_head % mp_num or n_embd % n_head:
        raise ValueError(f"{n_head} heads do not split over mp_num={mp_num}")
    weights: dict[str, Any] = {}
    for shard in sorted(src.glob("*.safetensors")):
        weights |= load_file(str(shard))
    out: dict[str, Any] = {}
    for name, tensor in weights.items():
        if name.endswith(".attn.qkv_proj.weight"):
            prefix = name.removesuffix("qkv_proj.weight")
            q, k, v = split(tensor, n_embd, mp_num)
            out[prefix + "q_proj.weight"] = q
            out[prefix + "k_proj.weight"] = k
            out[prefix + "v_proj.weight"] = v
        elif name.endswith((".attn.causal_mask", ".attn.masked_bias")):
            continue  # buffers of old exports, rebuilt by every loader
        else:
            out[name] = tensor.contiguous()  # wte, ln_1, out_proj, fc_in/fc_out, ln_f, lm_head
    if "lm_head.weight" not in out:  # a tied export: GPT-J's head is untied and has a bias
        out["lm_head.weight"] = out["transformer.wte.weight"].clone()
    if "lm_head.bias" not in out:
        import torch

        out["lm_head.bias"] = torch.zeros(out["lm_head.weight"].shape[0])

    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if path.is_file() and not is_weight_file(path.name):
            shutil.copy2(path, dst / path.name)
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    keep = (
        "vocab_size",
        "n_positions",
        "n_embd",
        "n_layer",
        "n_head",
        "rotary_dim",
        "n_inner",
        "activation_function",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "layer_norm_epsilon",
        "initializer_range",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
        "use_cache",
        "dtype",
        "torch_dtype",
    )
    gptj = {key: config[key] for key in keep if key in config}
    gptj |= {"architectures": ["GPTJForCausalLM"], "model_type": "gptj"}
    gptj["tie_word_embeddings"] = False
    (dst / "config.json").write_text(json.dumps(gptj, indent=2) + "\n")
    return dst


@dataclass
class Exactness:
    max_abs_diff: float
    allclose: bool
    greedy_equal: list[bool]


def check_exact(codegen: Path, gptj: Path, new_tokens: int = 32) -> Exactness:
    """Logits and greedy tokens of CodeGenForCausalLM and GPTJForCausalLM on `PROMPTS`."""
    import torch
    from transformers import (
        AutoTokenizer,
        CodeGenForCausalLM,
        GPTJForCausalLM,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(codegen))
    a = CodeGenForCausalLM.from_pretrained(str(codegen), dtype=torch.float32).eval()
    b = GPTJForCausalLM.from_pretrained(str(gptj), dtype=torch.float32).eval()
    worst, close, equal = 0.0, True, []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt").input_ids
            la, lb = a(ids).logits, b(ids).logits
            worst = max(worst, float((la - lb).abs().max()))
            close = close and bool(torch.allclose(la, lb, atol=1e-5, rtol=1e-4))
            ga = a.generate(
                ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
            )
            gb = b.generate(
                ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
            )
            equal.append(bool(torch.equal(ga, gb)))
    return Exactness(worst, close, equal)


@dataclass
class ServedPath:
    label: str
    backend: str
    model: Path
    startup_s: float = 0.0
    startup_load: str = ""
    first_s: float = 0.0
    greedy_tps: float = 0.0
    greedy_load: str = ""
    sampled_tps: float = 0.0
    sampled_tokens: int = 0
    sampled_load: str = ""
    greedy_texts: list[str] = field(default_factory=list)
    n_refused: str = ""
    logprobs: str = ""
    error: str = ""


def engine_config(backend: str) -> dict[str, Any]:
    engine: dict[str, Any] = {
        "kind": "managed",
        "port": free_port(),
        "dtype": "float32",
        "backend": backend,
    }
    if backend == "vllm":  # the vLLM tests' CPU settings
        engine |= {"max_model_len": 2048, "enforce_eager": True}
        engine["env"] = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    return engine


def complete(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + "/v1/completions", json={"model": "codegen", **body}, timeout=900)


def measure(path: ServedPath, work: Path) -> None:
    """Serve `path.model` alone through the gateway and fill in its figures."""
    work.mkdir(parents=True, exist_ok=True)
    models = work / "models.json"
    models.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "codegen",
                        "model": str(path.model),
                        "engine": engine_config(path.backend),
                    }
                ]
            }
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    with gateway(models, work / "gateway.log", env) as (url, ready_s):
        path.startup_s, path.startup_load = ready_s, load_average()
        # Warm-up (first-request compilation and allocation are not the steady speed).
        started = time.monotonic()
        complete(url, {"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0}).raise_for_status()
        path.first_s = time.monotonic() - started

        started = time.monotonic()
        resp = complete(
            url,
            {"prompt": PROMPTS[0], "max_tokens": TOKENS, "min_tokens": TOKENS, "temperature": 0},
        )
        elapsed = time.monotonic() - started
        resp.raise_for_status()
        path.greedy_tps = resp.json()["usage"]["completion_tokens"] / elapsed
        path.greedy_load = load_average()

        sampled = {
            "prompt": PROMPTS[0],
            "max_tokens": TOKENS,
            "min_tokens": TOKENS,
            "temperature": 0.8,
            "top_p": 0.95,
        }
        refused = complete(url, {**sampled, "n": 2, "max_tokens": 2, "min_tokens": 2})
        path.n_refused = "yes" if refused.status_code == 400 else f"no ({refused.status_code})"
        lp = complete(url, {"prompt": PROMPTS[0], "max_tokens": 2, "logprobs": 2})
        path.logprobs = "yes" if lp.status_code == 200 else f"no ({lp.status_code})"
        started = time.monotonic()
        if path.backend == "vllm":
            resp = complete(url, {**sampled, "n": CANDIDATES, "seed": 1})
            resp.raise_for_status()
            tokens = int(resp.json()["usage"]["completion_tokens"])
        else:  # transformers serve refuses n>1: the candidates are concurrent requests
            with ThreadPoolExecutor(CANDIDATES) as pool:
                answers = list(
                    pool.map(lambda i: complete(url, {**sampled, "seed": i}), range(CANDIDATES))
                )
            for answer in answers:
                answer.raise_for_status()
            tokens = sum(int(a.json()["usage"]["completion_tokens"]) for a in answers)
        elapsed = time.monotonic() - started
        path.sampled_tokens = tokens
        path.sampled_tps = tokens / elapsed
        path.sampled_load = load_average()

        for prompt in PROMPTS:
            resp = complete(url, {"prompt": prompt, "max_tokens": 32, "temperature": 0})
            resp.raise_for_status()
            path.greedy_texts.append(resp.json()["choices"][0]["text"])


def table(paths: list[ServedPath], uptime: str) -> str:
    rows = [
        "| path | start-up to ready (first 4-token request) | greedy 64 tok "
        "| 8 x 64 sampled (aggregate) | n>1 | logprobs |",
        "|---|---|---|---|---|---|",
    ]
    for p in paths:
        if p.error:
            rows.append(f"| {p.label} | FAILED: {p.error} | | | | |")
            continue
        rows.append(
            f"| {p.label} | {p.startup_s:.1f} s ({p.first_s:.1f} s) (load {p.startup_load}) "
            f"| {p.greedy_tps:.1f} tok/s (load {p.greedy_load}) "
            f"| {p.sampled_tps:.1f} tok/s, {p.sampled_tokens} tok (load {p.sampled_load}) "
            f"| {'refused (400)' if p.n_refused == 'yes' else 'served'} "
            f"| {'served' if p.logprobs == 'yes' else 'refused ' + p.logprobs[3:]} |"
        )
    return "\n".join(rows) + f"\n\n`uptime` at the end: {uptime}"


def main() -> None:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="work directory (default: a temporary one)")
    parser.add_argument(
        "--shape",
        choices=["demo", "350m"],
        default="demo",
        help="the demo model, or a random-weight model shaped as CodeGen-350M",
    )
    args = parser.parse_args()
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="codegen-paths-"))
    out.mkdir(parents=True, exist_ok=True)

    codegen = build_codegen(out / "codegen", args.shape)
    gptj = convert_codegen_to_gptj(codegen, out / "codegen-gptj")
    print(f"converted {codegen} -> {gptj}")

    exact = check_exact(codegen, gptj)
    print(
        f"exactness (transformers, fp32, {len(PROMPTS)} prompts): max |logit diff| "
        f"{exact.max_abs_diff:.2e}, allclose {exact.allclose}, greedy tokens equal "
        f"{exact.greedy_equal}"
    )
    naive = check_exact(
        codegen, convert_codegen_to_gptj(codegen, out / "naive", split=naive_split_qkv)
    )
    print(
        f"control, q/k/v as contiguous thirds (ignoring mp_num): max |logit diff| "
        f"{naive.max_abs_diff:.2e}, allclose {naive.allclose}, greedy tokens equal "
        f"{naive.greedy_equal}"
    )
    shutil.rmtree(out / "naive")

    paths = [
        ServedPath("(a) CodeGen on transformers serve", "transformers", codegen),
        ServedPath("(b) GPT-J conversion on vLLM", "vllm", gptj),
    ]
    for path in paths:  # one at a time: never two engines at once
        print(f"serving {path.label} ... (load {load_average()})", flush=True)
        try:
            measure(path, out / path.backend)
        except (httpx.HTTPError, SystemExit, KeyError, ValueError) as exc:
            path.error = f"{type(exc).__name__}: {exc}"[:300]
        print(f"  done: {path}", flush=True)

    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print()
    print(table(paths, uptime))
    a, b = paths
    if a.greedy_texts and b.greedy_texts:
        same = [x == y for x, y in zip(a.greedy_texts, b.greedy_texts, strict=True)]
        print(f"\ngreedy text through the gateway identical (a) vs (b), per prompt: {same}")
        for prompt, x, y in zip(PROMPTS, a.greedy_texts, b.greedy_texts, strict=True):
            if x != y:
                print(f"  {prompt!r}:\n    (a) {x!r}\n    (b) {y!r}")
    print(f"\nwork directory: {out}")


if __name__ == "__main__":
    main()
