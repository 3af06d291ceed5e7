"""Per-request cost of FIM rendering in the gateway (tokenizing + template), in microseconds.

    python -m bench.fim_render [--tokenizer DIR] [--family qwen2.5-coder] [--repeat 2000]

Renders an IDE-sized request (prefix ~3 KB before the cursor, suffix ~1 KB after it, taken from a
stdlib module) through the same `apply_fim` the /v1/completions hook calls, for: plain FIM, FIM
with four other files of repo context (~2 KB each), and a prefix that spells the family's FIM
tokens as text. Uses a freshly built demo tokenizer of --family unless --tokenizer points at a
model directory with a tokenizer.json (e.g. a real Qwen2.5-Coder checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sysconfig
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from codeserve.server.config import ModelSpec, Settings
from codeserve.server.fim.renderer import PromptRenderer, apply_fim
from codeserve.server.protocol import CompletionRequest


def source_text() -> str:
    return (Path(sysconfig.get_paths()["stdlib"]) / "json" / "decoder.py").read_text()


def requests(model: str, controls: str) -> dict[str, CompletionRequest]:
    text = source_text()
    cut = len(text) // 2
    prefix, suffix = text[cut - 3000 : cut], text[cut : cut + 1000]
    files = [
        {"filename": f"pkg/mod{i}.py", "text": text[i * 2000 : (i + 1) * 2000]} for i in range(4)
    ]
    base = {"model": model, "prompt": prefix, "suffix": suffix, "max_tokens": 64}
    return {
        "plain FIM": CompletionRequest.model_validate(base),
        "FIM + 4 repo files": CompletionRequest.model_validate({**base, "extra_files": files}),
        "FIM tokens typed in prefix": CompletionRequest.model_validate(
            {**base, "prompt": prefix + controls}
        ),
    }


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm caches
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    return samples


def load_renderer(tokenizer_dir: Path) -> PromptRenderer:
    spec = ModelSpec.model_validate(
        {
            "name": "bench",
            "model": str(tokenizer_dir),
            "engine": {"kind": "upstream", "urls": ["http://127.0.0.1:9"]},
        }
    )
    renderer = PromptRenderer(spec, Settings())
    asyncio.run(renderer.load())
    if renderer.prompter is None:
        raise SystemExit(f"no FIM template for {tokenizer_dir}: {renderer.reason}")
    return renderer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, help="model dir with tokenizer.json")
    parser.add_argument("--family", default="qwen2.5-coder", help="demo family to build")
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.tokenizer
        if directory is None:
            from codeserve.server.demo_models import build_demo_tokenizer

            directory = Path(tmp) / args.family
            build_demo_tokenizer(directory, args.family)
        renderer = load_renderer(directory)
        assert renderer.prompter is not None and renderer.tokenizer is not None
        template = renderer.prompter.template
        controls = "".join(
            s for s in (*template.prefix[:1], *template.suffix[:1], *template.middle[:1])
        )
        print(
            f"tokenizer {directory} ({len(renderer.tokenizer.vocab)} tokens), "
            f"template {template.name}, {args.repeat} renders each"
        )
        print(
            f"{'request':28s} {'prompt tokens':>13s} {'mean us':>9s} {'p50 us':>9s} {'p99 us':>9s}"
        )
        reqs = requests("bench", controls)
        plain = reqs["plain FIM"]
        engine = renderer.tokenizer.engine
        # Reference: the bare tokenizer on the same text, what any server spends anyway.
        bare = f"{plain.prompt}{plain.suffix}"
        samples = timed(lambda: engine.encode(bare, add_special_tokens=False), args.repeat)
        print(
            f"{'(bare encode, same text)':28s} {len(engine.encode(bare).ids):13d} "
            f"{statistics.fmean(samples):9.0f} {statistics.median(samples):9.0f} "
            f"{statistics.quantiles(samples, n=100)[98]:9.0f}"
        )
        for label, req in reqs.items():
            data: dict[str, object] = {}

            def render(req: CompletionRequest = req, data: dict[str, object] = data) -> None:
                data.clear()
                data.update(prompt=None)
                apply_fim(req, renderer, 4096, data)

            samples = timed(render, args.repeat)
            tokens = len(data["prompt"])  # type: ignore[arg-type]
            p99 = statistics.quantiles(samples, n=100)[98]
            print(
                f"{label:28s} {tokens:13d} {statistics.fmean(samples):9.0f} "
                f"{statistics.median(samples):9.0f} {p99:9.0f}"
            )


if __name__ == "__main__":
    main()
