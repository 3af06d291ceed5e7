"""The gateway's OpenAPI document, describing this instance as it really behaves.

Handlers read raw bytes for speed, so FastAPI cannot see the request bodies: they are added from
the pydantic models. Then the instance's own facts go in: which model names it serves and the
per-field limits of its settings, so clients (and fuzzers) see the same contract the gateway
enforces. Limits that span fields (n x prompts, prompt + max_tokens vs the context) cannot be
expressed in JSON Schema and stay runtime 400s.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from codeserve.server.config import Settings
from codeserve.server.protocol import ChatCompletionRequest, CompletionRequest

REQUEST_BODIES: dict[str, type[BaseModel]] = {
    "/v1/completions": CompletionRequest,
    "/v1/chat/completions": ChatCompletionRequest,
}
# The `object` of each streamed chunk, per path that streams.
STREAMING_PATHS = {
    "/v1/completions": "text_completion",
    "/v1/chat/completions": "chat.completion.chunk",
}


def gateway_openapi(app: FastAPI, settings: Settings, models: list[str]) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in REQUEST_BODIES.items():
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(js.pop("$defs", {}))
        components[model.__name__] = js
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    for path, chunk_object in STREAMING_PATHS.items():
        # With "stream": true the same 200 is a server-sent event stream.
        ok = schema["paths"][path]["post"]["responses"]["200"]["content"]
        ok["text/event-stream"] = {"schema": _event_schema(chunk_object)}
    for model in REQUEST_BODIES.values():
        _describe_limits(components[model.__name__]["properties"], settings, models)
    app.openapi_schema = schema
    return schema


def _describe_limits(props: dict[str, Any], settings: Settings, models: list[str]) -> None:
    props["model"]["enum"] = models
    integer_maxima = {
        "n": settings.max_n,
        "best_of": settings.max_n,
        "max_tokens": settings.max_tokens_limit,
        "max_completion_tokens": settings.max_tokens_limit,
        "min_tokens": settings.max_tokens_limit,
        "top_logprobs": settings.max_logprobs,
        "logprobs": settings.max_logprobs,  # completions only: chat's is a boolean
    }
    for name, maximum in integer_maxima.items():
        for branch in _branches(props.get(name)):
            if branch.get("type") == "integer":
                branch["maximum"] = min(maximum, branch.get("maximum", maximum))
    for branch in _branches(props.get("stop")):
        if branch.get("type") == "string":
            branch["maxLength"] = settings.max_stop_chars
        elif branch.get("type") == "array":
            branch["maxItems"] = settings.max_stop
            branch["items"]["maxLength"] = settings.max_stop_chars


def _branches(prop: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The alternatives of a property (`anyOf` of an optional field, or the property itself)."""
    if prop is None:
        return []
    return list(prop.get("anyOf", [prop]))


def _event_schema(chunk_object: str) -> dict[str, Any]:
    """One server-sent event (OpenAPI before 3.2 describes each event with `schema`): a chunk,
    an error object if the engine fails mid-stream, and finally `[DONE]`."""
    chunk = {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "object": {"const": chunk_object},
            "choices": {"type": "array", "items": {"type": "object"}},
        },
    }
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "anyOf": [
                    {"const": "[DONE]"},
                    {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"anyOf": [chunk, error]},
                    },
                ]
            }
        },
    }
