"""Run the real gateway app (uvicorn on 127.0.0.1) in the test's event loop, with fake engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from codeserve.server.app import create_app
from codeserve.server.config import ModelsFile, Settings


def upstream_models(urls: dict[str, list[str]], **served: str) -> ModelsFile:
    return ModelsFile.model_validate(
        {
            "models": [
                {
                    "name": name,
                    "model": f"org/{name}",
                    "engine": {
                        "kind": "upstream",
                        "urls": replica_urls,
                        **({"served_model_name": served[name]} if name in served else {}),
                    },
                }
                for name, replica_urls in urls.items()
            ]
        }
    )


@asynccontextmanager
async def running_gateway(models: ModelsFile, **settings: Any) -> AsyncIterator[str]:
    """Yields the gateway's base URL once every model has been health-checked once."""
    config = Settings(port=0, health_interval_s=0.2, health_timeout_s=1, **settings)
    app = create_app(config, models)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        await asyncio.sleep(0.3)  # one health round
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
