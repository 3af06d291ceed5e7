"""Fill-in-the-middle for every model: template detection at start-up, rendering per request.

Each model gets a `PromptRenderer`. At start-up it loads the model's tokenizer off the event loop
and picks a template: the one named by the models file (`fim: <template>`), none (`fim: none`),
or, with `fim: auto`, the first template whose token texts are all in the vocabulary (the way
llama.cpp recognises FIM tokens by their text). A model whose tokenizer cannot be loaded (hub
unreachable, no tokenizer.json) serves on without FIM, with one log line saying why.

`apply_fim` turns a validated completion request with `suffix` into the engine's request: the
prompt becomes token ids and the template's stop tokens are added to `stop_token_ids`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from codeserve.server.config import ModelSpec, Settings
from codeserve.server.errors import InvalidRequestError
from codeserve.server.fim.prompter import FimPrompter, Overflow, Rendering, TemplateMismatch
from codeserve.server.fim.templates import BY_NAME, TEMPLATES, FimTemplate
from codeserve.server.fim.tokenizer import ModelTokenizer, locate_tokenizer, read_model_type
from codeserve.server.limits import ENGINE_DEFAULT_MAX_TOKENS
from codeserve.server.protocol import CompletionRequest

log = logging.getLogger("codeserve")

_ALL_CONTROL = frozenset(s for t in TEMPLATES for s in t.control_spellings())


def detect_template(vocab: dict[str, int], model_type: str | None) -> FimTemplate | None:
    """The first template whose tokens (and markers, and model type if it names any) match."""
    for template in TEMPLATES:
        needed = [template.prefix, template.suffix, *([template.middle] if template.middle else [])]
        if not all(any(s in vocab for s in spellings) for spellings in needed):
            continue
        if not all(marker in vocab for marker in template.markers):
            continue
        if template.model_types and model_type not in template.model_types:
            continue
        return template
    return None


class PromptRenderer:
    """A model's tokenizer and FIM template, loaded once at start-up."""

    def __init__(self, spec: ModelSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.tokenizer: ModelTokenizer | None = None
        self.prompter: FimPrompter | None = None
        # Why this model has no FIM (for the log and for 400 messages).
        self.reason = "its tokenizer is still loading"
        self._loaded = asyncio.Event()

    @property
    def template_name(self) -> str | None:
        return self.prompter.template.name if self.prompter else None

    async def load(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        finally:
            self._loaded.set()

    async def wait(self) -> None:
        await self._loaded.wait()

    def _load(self) -> None:
        name = self.spec.name
        source = self.spec.tokenizer or self.spec.weights
        try:
            files = locate_tokenizer(source, self.settings)
            self.tokenizer = ModelTokenizer.from_file(files.tokenizer_json, _ALL_CONTROL)
        except Exception as exc:
            # Whatever breaks here (missing file, corrupt JSON, hub error) only costs FIM and
            # rendering; the model itself still serves.
            self.reason = f"its tokenizer could not be loaded ({exc})"
            log.warning("[%s] FIM disabled: %s", name, self.reason)
            return
        if self.spec.fim == "none":
            self.reason = "the models file sets `fim: none`"
            return
        if self.spec.fim == "auto":
            template = detect_template(self.tokenizer.vocab, read_model_type(files.config_json))
            if template is None:
                self.reason = "its tokenizer has no fill-in-the-middle tokens"
                log.info("[%s] no FIM tokens in the tokenizer; `suffix` will be refused", name)
                return
        else:
            template = BY_NAME[self.spec.fim]
        try:
            self.prompter = FimPrompter(template, self.tokenizer)
        except TemplateMismatch as exc:
            self.reason = str(exc)
            log.error("[%s] FIM disabled: %s", name, exc)
            return
        log.info("[%s] FIM template %s", name, template.name)

    def require_prompter(self) -> FimPrompter:
        if self.prompter is None:
            raise InvalidRequestError(
                f"model {self.spec.name!r} does not support fill-in-the-middle (`suffix`): "
                f"{self.reason}",
                param="suffix",
            )
        return self.prompter

    def require_tokenizer(self) -> ModelTokenizer:
        if self.tokenizer is None:
            raise InvalidRequestError(
                f"model {self.spec.name!r} cannot render prompts: {self.reason}", param="model"
            )
        return self.tokenizer


def prompt_budget(max_model_len: int | None, max_tokens: int | None) -> int | None:
    """Prompt tokens the context leaves room for besides the generation."""
    if max_model_len is None:
        return None
    return max_model_len - (max_tokens or ENGINE_DEFAULT_MAX_TOKENS)


def apply_fim(
    req: CompletionRequest,
    renderer: PromptRenderer | None,
    max_model_len: int | None,
    data: dict[str, Any],
    overflow: Overflow = "error",
) -> list[Rendering]:
    """Rewrite the engine request `data` for a FIM request (no-op without `suffix`)."""
    data.pop("suffix", None)
    data.pop("extra_files", None)
    if req.suffix is None:
        if req.extra_files:
            raise InvalidRequestError(
                "`extra_files` is repo-level context for fill-in-the-middle and needs `suffix`",
                param="extra_files",
            )
        return []
    if renderer is None:
        raise InvalidRequestError("this model does not support `suffix`", param="suffix")
    prompter = renderer.require_prompter()
    if req.echo:
        # The engine would echo the rendered control tokens, not the user's prefix; the exact
        # prompt is available from /v1/completions/render instead.
        raise InvalidRequestError(
            "`echo` cannot be combined with `suffix`; use "
            "/v1/completions/render to see the rendered prompt",
            param="echo",
        )
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if not all(isinstance(p, str) for p in prompts):
        raise InvalidRequestError(
            "with `suffix`, `prompt` must be text (the prefix)", param="prompt"
        )
    budget = prompt_budget(max_model_len, req.max_tokens)
    renderings = [
        prompter.render(p, req.suffix, req.extra_files or (), budget=budget, overflow=overflow)
        for p in prompts
        if isinstance(p, str)
    ]
    ids = [r.token_ids for r in renderings]
    data["prompt"] = ids[0] if isinstance(req.prompt, str) else ids
    data["stop_token_ids"] = list(dict.fromkeys([*(req.stop_token_ids or []), *prompter.stop_ids]))
    return renderings
