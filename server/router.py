"""HTTP routes. Only maps HTTP to the serving layer; no OpenAI semantics live here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from codeserve.common.error_object import ErrorResponse
from codeserve.server.dialects.llama_cpp import handle_infill
from codeserve.server.dialects.routes import router as dialect_routes
from codeserve.server.errors import UnavailableError
from codeserve.server.fim.dry_run import render_completion
from codeserve.server.metrics import GatewayMetrics
from codeserve.server.protocol import (
    SERVING_STATES,
    ChatCompletionResponse,
    CompletionResponse,
    HealthResponse,
    InfillResponse,
    ModelCard,
    ModelList,
    ReadyResponse,
    RenderResponse,
    ScoreRequest,
)
from codeserve.server.registry import ModelRegistry
from codeserve.server.scoring import ScoreService, disabled
from codeserve.server.serving import CHAT, COMPLETIONS, CompletionService

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 502, 503, 504)
}


def get_service(request: Request) -> CompletionService:
    if request.app.state.drain.draining:
        raise UnavailableError("the gateway is shutting down", headers={"Retry-After": "5"})
    service: CompletionService = request.app.state.service
    return service


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


def get_scorer(request: Request) -> ScoreService:
    scorer: ScoreService | None = request.app.state.scorer
    if scorer is None:
        raise disabled()
    return scorer


Scorer = Annotated[ScoreService, Depends(get_scorer)]
Service = Annotated[CompletionService, Depends(get_service)]
Registry = Annotated[ModelRegistry, Depends(get_registry)]
Metrics = Annotated[GatewayMetrics, Depends(get_metrics)]

router = APIRouter()


@router.post("/v1/completions", response_model=CompletionResponse, responses=ERRORS)
async def completions(request: Request, service: Service) -> Response:
    return await service.handle(request, COMPLETIONS)


@router.post("/v1/chat/completions", response_model=ChatCompletionResponse, responses=ERRORS)
async def chat_completions(request: Request, service: Service) -> Response:
    return await service.handle(request, CHAT)


@router.post("/v1/completions/render", response_model=RenderResponse, responses=ERRORS)
async def render(request: Request, service: Service) -> RenderResponse:
    return await render_completion(service, request)


@router.post("/infill", response_model=InfillResponse, responses=ERRORS)
async def infill(request: Request, service: Service) -> Response:
    return await handle_infill(request)


@router.post("/v1/score", responses={**ERRORS, 503: {"model": ErrorResponse}})
async def score(body: ScoreRequest, scorer: Scorer) -> JSONResponse:
    result = await scorer.score(body)
    return JSONResponse(result.model_dump(mode="json"))


@router.get("/v1/models", response_model=ModelList, responses=ERRORS)
async def list_models(registry: Registry) -> ModelList:
    return ModelList(
        data=[
            ModelCard(
                id=e.name,
                created=e.created,
                root=e.spec.model,
                state=e.state,
                engine=e.spec.engine.kind,
                fim_template=e.fim_template,
                max_model_len=e.max_model_len,
            )
            for e in registry.entries.values()
        ]
    )


@router.get("/health", response_model=HealthResponse)
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={
        503: {"model": ReadyResponse},
        400: {"model": ErrorResponse},
        404: {"model": ErrorResponse},
    },
)
async def ready(
    request: Request, registry: Registry, model: Annotated[str | None, Query(max_length=128)] = None
) -> JSONResponse:
    states = {model: registry.get(model).state} if model else registry.states()
    # A busy model is serving (it only answers its engine's health checks late), and so is a
    # degraded one (some of its replicas are down, the others serve).
    ok = all(s in SERVING_STATES for s in states.values()) and not request.app.state.drain.draining
    body = ReadyResponse(ready=ok, models=states).model_dump()
    return JSONResponse(
        body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"}
    )


@router.get("/metrics", response_class=Response)
async def metrics(registry: Registry, metrics: Metrics) -> Response:
    for name, admission in registry.admissions.items():
        metrics.queue_length.labels(name).set(admission.queued)
    return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


# IDE plugin dialects (Mistral FIM, Ollama, TGI): server/dialects/routes.py.
router.include_router(dialect_routes)
