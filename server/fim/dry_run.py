"""POST /v1/completions/render: the exact prompt a completions body would give the engine.

Same body as /v1/completions, same validation, limits and FIM rendering (`apply_fim`), but
nothing is generated: the answer lists the token ids (and their text) per prompt and the stop
token ids the engine would get. Needs only the model's tokenizer, not a running engine.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from codeserve.server.errors import InvalidRequestError
from codeserve.server.fim.renderer import apply_fim
from codeserve.server.limits import check_limits
from codeserve.server.protocol import CompletionRequest, RenderedPrompt, RenderResponse
from codeserve.server.serving import CompletionService, parse_request, read_body


def _prompt_items(prompt: Any) -> list[str | list[int]]:
    """The engine prompt field as a list of prompts (each text or token ids)."""
    if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
        return [prompt]
    return list(prompt)


async def render_completion(service: CompletionService, request: Request) -> RenderResponse:
    body = await read_body(request, service.settings.max_body_bytes)
    req: CompletionRequest = parse_request(body, CompletionRequest)
    entry = service.registry.get(req.model)
    renderer = entry.renderer
    if renderer is None:
        raise InvalidRequestError(f"model {entry.name!r} has no tokenizer", param="model")
    await renderer.wait()
    tokenizer = renderer.require_tokenizer()
    check_limits(req, service.settings, entry.max_model_len)
    data = req.model_dump(exclude_unset=True, exclude_none=True)
    renderings = apply_fim(req, renderer, entry.max_model_len, data)
    prompts = []
    for index, item in enumerate(_prompt_items(data["prompt"])):
        ids = tokenizer.encode_prompt(item) if isinstance(item, str) else item
        rendering = renderings[index] if renderings else None
        prompts.append(
            RenderedPrompt(
                token_ids=ids,
                text=tokenizer.decode(ids),
                tokenized_by="engine" if isinstance(item, str) else "gateway",
                files_used=rendering.files_used if rendering else 0,
                files_dropped=rendering.files_dropped if rendering else 0,
            )
        )
    return RenderResponse(
        model=entry.name,
        fim_template=renderer.template_name,
        prompts=prompts,
        stop_token_ids=data.get("stop_token_ids"),
    )
