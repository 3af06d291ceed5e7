"""Builds the FastAPI app: lifespan owns the engines, central handlers own the error shape."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from server.auth import AuthMiddleware, load_api_keys
from server.config import ModelsFile, Settings
from server.engines.client import new_session
from server.errors import APIError, InvalidRequestError
from server.metrics import GatewayMetrics
from server.protocol import ChatCompletionRequest, CompletionRequest
from server.registry import ModelRegistry
from server.router import router
from server.scoring import ScoreService
from server.serving import ClientDisconnected, CompletionService, validation_error

log = logging.getLogger("codeserve")

_STATUS_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                 404: "invalid_request_error", 405: "invalid_request_error",
                 413: "invalid_request_error", 429: "rate_limit_error"}


def error_response(status: int, message: str, *, type_: str | None = None,
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message,
                      "type": type_ or _STATUS_TYPES.get(status, "server_error"),
                      "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    err = InvalidRequestError(f"invalid request: {'.'.join(loc)}: {first['msg']}",
                              param=".".join(loc) or None)
    return await _api_error(_, err)


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else None
    return error_response(exc.status_code, str(exc.detail), code=code,
                          headers=getattr(exc, "headers", None))


async def _disconnected(_: Request, exc: Exception) -> Response:
    return Response(status_code=499)


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error in the gateway; see its log",
                          type_="server_error", code="internal_error")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI with the real request bodies (handlers read raw bytes for speed)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    bodies = {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatCompletionRequest}
    for path, model in bodies.items():
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(js.pop("$defs", {}))
        components[model.__name__] = js
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    app.openapi_schema = schema
    return schema


def create_app(settings: Settings, models: ModelsFile) -> FastAPI:
    metrics = GatewayMetrics()
    registry = ModelRegistry(models.models, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        session = new_session(settings.connect_timeout_s, settings.read_timeout_s)
        app.state.service = CompletionService(settings, registry, metrics, session)
        registry.start(session)
        if settings.scoring_enabled:
            app.state.scorer = ScoreService(settings)
            await app.state.scorer.start()
        try:
            yield
        finally:
            app.state.draining = True
            await registry.stop()
            if app.state.scorer is not None:
                app.state.scorer.close()
            await session.close()

    app = FastAPI(title="Codeserve gateway", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.draining = False
    app.state.scorer = None
    app.include_router(router)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnected, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
    keys = load_api_keys(settings)
    if keys:
        app.add_middleware(AuthMiddleware, keys=keys,
                           open_paths=_open_paths(settings), on_error=error_response)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _open_paths(settings: Settings) -> frozenset[str]:
    paths = {"/health", "/ready"}
    if not settings.metrics_require_auth:
        paths.add("/metrics")
    return frozenset(paths)


__all__ = ["create_app", "error_response", "validation_error"]
