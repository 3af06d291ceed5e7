"""HTTP routes of the IDE plugin dialects, mapped to their adapters (included by
`codeserve.server.router`). They are left out of the gateway's OpenAPI document, which describes
its OpenAI API: each dialect follows its own vendor's API (see each module's docstring)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from codeserve.server.dialects import mistral, ollama, tgi
from codeserve.server.dialects.common import Dialect
from codeserve.server.errors import APIError

router = APIRouter(include_in_schema=False)
_TGI_PATHS = frozenset({"/", "/generate", "/generate_stream", "/info"})


def dialect_of(path: str) -> Dialect | None:
    """The dialect whose error shape a path answers in (None: the OpenAI error object)."""
    if path.startswith("/api/"):
        return ollama.DIALECT
    if path in _TGI_PATHS or path.startswith("/models/"):
        return tgi.DIALECT
    return None


def dialect_error(path: str, exc: APIError) -> Response | None:
    """An error raised outside the route handlers (a refused API key), in the shape the
    client of that path parses; None where the OpenAI error object is right."""
    dialect = dialect_of(path)
    return dialect.error_response(exc) if dialect is not None else None


@router.post("/v1/fim/completions")
async def fim_completions(request: Request) -> Response:
    return await mistral.fim_completions(request)


# Ollama


@router.post("/api/generate")
async def ollama_generate(request: Request) -> Response:
    return await ollama.generate(request)


@router.post("/api/chat")
async def ollama_chat(request: Request) -> Response:
    return await ollama.chat(request)


@router.get("/api/tags")
async def ollama_tags(request: Request) -> Response:
    return await ollama.tags(request)


@router.get("/api/ps")
async def ollama_ps(request: Request) -> Response:
    return await ollama.running(request)


@router.post("/api/show")
async def ollama_show(request: Request) -> Response:
    return await ollama.show(request)


@router.get("/api/version")
async def ollama_version(request: Request) -> Response:
    return await ollama.version(request)


@router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
async def ollama_other(request: Request, rest: str) -> Response:
    """The rest of Ollama's API (pull, push, create, copy, delete, embed...): models come from
    the gateway's models file, so these get Ollama's 404."""
    return await ollama.unsupported(request)


# Text Generation Inference: the gateway's first model, or the one named in the path.


@router.post("/")
async def tgi_compat(request: Request) -> Response:
    return await tgi.compat(request)


@router.post("/generate")
async def tgi_generate(request: Request) -> Response:
    return await tgi.generate(request)


@router.post("/generate_stream")
async def tgi_generate_stream(request: Request) -> Response:
    return await tgi.generate_stream(request)


@router.get("/info")
async def tgi_info(request: Request) -> Response:
    return await tgi.info(request)


@router.post("/models/{model}")
async def tgi_model_compat(request: Request, model: str) -> Response:
    return await tgi.compat(request, model)


@router.post("/models/{model}/generate")
async def tgi_model_generate(request: Request, model: str) -> Response:
    return await tgi.generate(request, model)


@router.post("/models/{model}/generate_stream")
async def tgi_model_generate_stream(request: Request, model: str) -> Response:
    return await tgi.generate_stream(request, model)


@router.get("/models/{model}/info")
async def tgi_model_info(request: Request, model: str) -> Response:
    return await tgi.info(request, model)
