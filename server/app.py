"""Builds the FastAPI app: lifespan owns the engines, central handlers own the error shape."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from codeserve.common.error_object import error_object
from codeserve.common.errors import InvalidInputError
from codeserve.server.auth import AuthMiddleware, load_api_keys
from codeserve.server.config import ModelsFile, Settings
from codeserve.server.dialects.routes import dialect_error
from codeserve.server.disconnects import ClientDisconnected
from codeserve.server.engines.client import new_session
from codeserve.server.errors import APIError, InvalidRequestError
from codeserve.server.hosts import AllowedHostsMiddleware
from codeserve.server.metrics import GatewayMetrics
from codeserve.server.openapi import gateway_openapi
from codeserve.server.registry import ModelRegistry
from codeserve.server.router import router
from codeserve.server.scoring import ScoreService
from codeserve.server.serving import CompletionService, validation_error
from codeserve.server.shutdown import Drain, DrainMiddleware

log = logging.getLogger("codeserve")

# Load balancers and monitoring reach these under any Host, also while draining, and without a
# key (/metrics only unless `metrics_require_auth`).
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(
    status: int,
    message: str,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_object(
        message, type_ or _STATUS_TYPES.get(status, "server_error"), param=param, code=code
    )
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _invalid_input(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidInputError)
    return await _api_error(_, InvalidRequestError(exc.message, param=exc.param, code=exc.code))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's first location part says where the value was, not which field.
    return await _api_error(_, validation_error(exc, drop=("body", "query", "path")))


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = "not_found" if exc.status_code == 404 else None
    return error_response(
        exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None)
    )


async def _disconnected(_: Request, exc: Exception) -> Response:
    return Response(status_code=499)


async def _unexpected(_: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return error_response(
        500,
        "internal error in the gateway; see its log",
        type_="server_error",
        code="internal_error",
    )


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
            drain.begin()
            await registry.stop()
            if app.state.scorer is not None:
                app.state.scorer.close()
            await session.close()

    app = FastAPI(
        title="Codeserve gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.metrics = metrics
    app.state.drain = drain = Drain()
    app.state.scorer = None
    app.include_router(router)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(InvalidInputError, _invalid_input)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnected, _disconnected)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
    _add_middleware(app, settings, drain)
    names = [spec.name for spec in models.models]
    app.openapi = lambda: gateway_openapi(app, settings, names)  # type: ignore[method-assign]
    return app


def _add_middleware(app: FastAPI, settings: Settings, drain: Drain) -> None:
    # Each one added wraps the ones before: the host check runs first, then CORS (so preflights
    # and refusals carry CORS headers), then auth, then the drain that counts requests.
    app.add_middleware(DrainMiddleware, drain=drain, probe_paths=PROBE_PATHS)
    keys = load_api_keys(settings)
    if keys:
        open_paths = PROBE_PATHS - ({"/metrics"} if settings.metrics_require_auth else set())
        app.add_middleware(
            AuthMiddleware,
            keys=keys,
            open_paths=open_paths,
            on_error=error_response,
            dialect_error=dialect_error,
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    if settings.allowed_hosts:
        app.add_middleware(
            AllowedHostsMiddleware,
            allowed_hosts=settings.allowed_hosts,
            probe_paths=PROBE_PATHS,
            on_error=error_response,
        )


__all__ = ["create_app", "error_response", "validation_error"]
