"""The command line of a `transformers serve` engine (transformers 5's OpenAI server)."""

from __future__ import annotations

import sys

from codeserve.server.config import ManagedEngine


def transformers_command(model: str, engine: ManagedEngine, port: int) -> list[str]:
    # The model is pinned (force model): loaded before /health answers and never unloaded, so
    # the supervisor's start-up wait covers the load, as with vLLM. `auto` dtype would keep a
    # checkpoint's bf16, which is slow on CPU: float32 unless the models file says otherwise.
    dtype = "float32" if engine.dtype == "auto" else engine.dtype
    return [
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        model,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        dtype,
        "--log-level",
        "info",
        *engine.extra_args,
    ]
