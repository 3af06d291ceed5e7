"""Pydantic models for every request and response the gateway speaks (OpenAI shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from codeserve.common.chat import ChatMessage

# Unknown request fields are dropped on purpose (never forwarded): the engine only ever sees the
# fields declared here, after validation.
_REQUEST_CONFIG = ConfigDict(extra="ignore", protected_namespaces=())
# The OpenAI endpoints also take JSON types exactly as documented: no "1" or true for 1, no 1.0
# for an integer (integers are still fine for numbers). The gateway's schema and its behaviour
# then agree, and so do clients generated from the schema.
_OPENAI_REQUEST_CONFIG = ConfigDict(extra="ignore", protected_namespaces=(), strict=True)

NonEmptyStr = Annotated[str, Field(min_length=1)]
# Bounded so every validated number fits the engine's types (and the 64-bit JSON encoder).
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]
TokenIds = Annotated[list[TokenId], Field(min_length=1)]


class StreamOptions(BaseModel):
    model_config = _OPENAI_REQUEST_CONFIG

    include_usage: bool = False


class FileContext(BaseModel):
    """Another file of the repository, for repo-level FIM context (llama.cpp `input_extra`)."""

    model_config = _REQUEST_CONFIG

    filename: str = Field("", max_length=1024)
    text: str


class SamplingFields(BaseModel):
    """Sampling parameters shared by completions and chat completions."""

    model_config = _OPENAI_REQUEST_CONFIG

    model: NonEmptyStr
    n: int = Field(1, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: NonEmptyStr | list[NonEmptyStr] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    user: str | None = Field(None, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # vLLM sampling extensions that code-model users rely on.
    top_k: int | None = Field(None, ge=-1, le=2**31 - 1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float | None = Field(None, gt=0, le=2)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool | None = None
    stop_token_ids: list[TokenId] | None = None
    include_stop_str_in_output: bool | None = None
    skip_special_tokens: bool | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class CompletionRequest(SamplingFields):
    prompt: (
        NonEmptyStr
        | Annotated[list[NonEmptyStr], Field(min_length=1)]
        | TokenIds
        | Annotated[list[TokenIds], Field(min_length=1)]
    )
    suffix: str | None = None
    echo: bool = False
    logprobs: int | None = Field(None, ge=0)
    best_of: int | None = Field(None, ge=1)
    # Repo-level FIM context: other files of the project, oldest first.
    extra_files: list[FileContext] | None = None

    def prompt_count(self) -> int:
        """How many prompts the request carries (a batch multiplies the candidates by n)."""
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return 1
        return len(p)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0)


# Responses. The gateway relays engine bytes on the hot path; these document the shapes (OpenAPI)
# and type the places where the gateway builds or edits a response itself.


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompletionChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    text: str
    logprobs: dict[str, Any] | None = None
    finish_reason: str | None = None


class CompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ChatChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    message: dict[str, Any]
    finish_reason: str | None = None


class ChatCompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


# "busy": serving, but late to answer health checks while it generates (a loaded CPU engine).
# "degraded": serving, but some of its replicas are down (the others take the traffic).
ModelState = Literal["starting", "ready", "busy", "degraded", "restarting", "failed"]
# The states in which a model takes requests (and /ready is 200).
SERVING_STATES: frozenset[ModelState] = frozenset({"ready", "busy", "degraded"})


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "codeserve"
    root: str
    state: ModelState
    engine: Literal["managed", "upstream"]
    fim_template: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    models: dict[str, ModelState]


class ScoreRequest(BaseModel):
    """POST /v1/score: judge candidate completions of one benchmark task in the sandbox."""

    model_config = ConfigDict(extra="forbid")

    benchmark: NonEmptyStr = Field(examples=["humaneval", "mbpp", "humaneval+"])
    task_id: NonEmptyStr = Field(examples=["HumanEval/0", "Mbpp/2"])
    completions: list[str] = Field(min_length=1, examples=[["    return []\n"]])
    k: list[Annotated[int, Field(ge=1)]] | None = None


class RenderedPrompt(BaseModel):
    """One prompt exactly as the engine receives it."""

    token_ids: list[int]
    # The ids decoded with control tokens spelled out.
    text: str
    # "gateway": the gateway sends these ids (FIM prompts, token-id prompts). "engine": the
    # engine gets the text and tokenizes it itself; the ids come from the same tokenizer.
    tokenized_by: Literal["gateway", "engine"]
    files_used: int = 0
    files_dropped: int = 0


class RenderResponse(BaseModel):
    """POST /v1/completions/render: the engine's prompt for a completions body, no generation."""

    object: Literal["completion.render"] = "completion.render"
    model: str
    fim_template: str | None
    prompts: list[RenderedPrompt]
    stop_token_ids: list[int] | None = None


class InfillRequest(BaseModel):
    """llama.cpp's `POST /infill` body, as llama.vscode sends it.

    Ignored on purpose (llama.vscode sends them, they have no vLLM counterpart): `samplers` (the
    engine's sampler order is fixed), `cache_prompt` (vLLM caches prefixes by itself),
    `t_max_prompt_ms` and `t_max_predict_ms` (no per-request time budget), `n_indent`, `id_slot`,
    `lora`.
    """

    model_config = _REQUEST_CONFIG

    # llama.cpp serves one model; without `model` the first model with a FIM template answers.
    model: str | None = Field(None, min_length=1)
    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[FileContext] = Field(default_factory=list)
    # The current line up to the cursor; llama.cpp appends it to `input_prefix`.
    prompt: str = ""
    # -1: no limit of our own (the engine's default); 0: a warm-up call, answered at once.
    n_predict: int = Field(-1, ge=-1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_k: int | None = Field(None, ge=-1, le=2**31 - 1)
    top_p: float | None = Field(None, ge=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=-1, le=2**63 - 1)
    stop: list[NonEmptyStr] | None = None
    stream: bool = False


class InfillTimings(BaseModel):
    prompt_n: int
    predicted_n: int
    # Measured only when streaming: time to the first token, and the rest.
    prompt_ms: float | None = None
    predicted_ms: float | None = None


class InfillChunk(BaseModel):
    """A streamed piece of an /infill answer (llama.cpp shape)."""

    index: int = 0
    content: str
    tokens: list[int] = Field(default_factory=list)
    stop: bool = False
    id_slot: int = -1


class InfillResponse(InfillChunk):
    """The whole /infill answer, or the last streamed event (llama.cpp shape)."""

    stop: bool = True
    model: str
    tokens_predicted: int
    tokens_evaluated: int
    tokens_cached: int = 0
    truncated: bool
    has_new_line: bool
    stop_type: Literal["none", "eos", "word", "limit"]
    stopping_word: str = ""
    timings: InfillTimings
