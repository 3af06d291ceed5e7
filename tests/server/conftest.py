"""Fixtures shared by the gateway tests. Modules that need another upstream (other mock
settings, a recording engine) define their own `engine`, which takes precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from tests.server.real_model import real_model_dir


@pytest.fixture
async def engine() -> AsyncIterator[MockServer]:
    """A mock vLLM upstream with default settings, on a free port."""
    server = MockServer(MockConfig())
    async with server:
        yield server
