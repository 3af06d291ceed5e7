"""HTTP routes of the IDE plugin dialects, mapped to their adapters (included by
`codeserve.server.router`). They are left out of the gateway's OpenAPI document, which describes
its OpenAI API: each dialect follows its own vendor's API (see each module's docstring)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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


Handler = Callable[[Request], Awaitable[Response]]

# (method, path, handler): each adapter reads what it needs from the request itself.
ROUTES: list[tuple[str, str, Handler]] = [
    # Mistral (Codestral) FIM
    ("POST", "/v1/fim/completions", mistral.fim_completions),
    # Ollama
    ("POST", "/api/generate", ollama.generate),
    ("POST", "/api/chat", ollama.chat),
    ("GET", "/api/tags", ollama.tags),
    ("GET", "/api/ps", ollama.running),
    ("POST", "/api/show", ollama.show),
    ("GET", "/api/version", ollama.version),
    # Text Generation Inference: the gateway's first model, or the one named in the path.
    ("POST", "/", tgi.compat),
    ("POST", "/generate", tgi.generate),
    ("POST", "/generate_stream", tgi.generate_stream),
    ("GET", "/info", tgi.info),
    ("POST", "/models/{model}", tgi.compat),
    ("POST", "/models/{model}/generate", tgi.generate),
    ("POST", "/models/{model}/generate_stream", tgi.generate_stream),
    ("GET", "/models/{model}/info", tgi.info),
    # The rest of Ollama's API (pull, push, create, copy, delete, embed...): models come from
    # the gateway's models file, so these get Ollama's 404. Last: it matches every /api/ path.
    ("*", "/api/{rest:path}", ollama.unsupported),
]

for _method, _path, _handler in ROUTES:
    _methods = ["GET", "POST", "PUT", "DELETE", "HEAD"] if _method == "*" else [_method]
    router.add_route(_path, _handler, methods=_methods, include_in_schema=False)
