"""Who is compared and which eval runs that takes.

Targets come from `--base-url` (repeatable) and `--model` (repeatable), or from a small YAML file
of endpoint + model pairs. An endpoint's `/models` answer lists what it serves (all of it when no
`--model` is given), the checkpoint behind each name (`root`) and, from Codeserve's gateway,
whether it fills the middle (`fim_template`).

Each target gets a prompt style: `chat` (the chat template, answers' code extracted and
sanitized) for instruct/chat models, `base` (the benchmark's completion prompt and stop
sequences) otherwise; detected from the served name and root, or set by the user. Every model of
one style gets the same prompts, stops, sanitizer and sandbox.

Each (target, benchmark) is at most two `codeserve eval` run folders under `runs/`: a greedy one
(n=1, temperature 0, for pass@1 as published) and a sampled one (n candidates at the chosen
temperature, for pass@k and sampling speed). Rerunning continues them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from codeserve.client.bakeoff.published import BY_KEY, match
from codeserve.client.bakeoff.results import PhaseKind, Settings, Style, Target
from codeserve.client.endpoint import error_message, normalize_base_url
from codeserve.client.eval_run import EvalConfig
from codeserve.client.protocol import SamplingParams
from codeserve.common.errors import CliError, validation_message
from codeserve.datasets import BENCHMARKS, Family

DEFAULT_BENCHMARKS = ("humaneval+", "mbpp+")
RUNS_DIR = "runs"
PLAN_FILE = "plan.json"
# Served names or roots that say "instruct model": Instruct, chat, a `-it` suffix (Gemma).
_CHAT_NAME = re.compile(r"instruct|chat|(^|[-_/.])it($|[-_/.])", re.I)
# Gateway model states that cannot answer now.
_NOT_SERVING = ("starting", "restarting", "failed")
FIRST_ROUND_TASKS = 5


class TargetSpec(BaseModel):
    """One entry of a targets file (or one --base-url): an endpoint and, optionally, a model."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str | None = Field(None, description="None: every model the endpoint serves")
    label: str | None = None
    format: Literal["auto", "base", "chat"] = "auto"
    fim: bool | None = None
    published: str | None = Field(None, description="a published row's key, or none")
    api_key_env: str | None = None


class _TargetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[TargetSpec] = Field(min_length=1)


def load_targets_file(path: Path) -> list[TargetSpec]:
    """`targets: [{base_url, model, label?, format?, fim?, published?, api_key_env?}]` (a bare
    list works too)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CliError(f"--targets {path}: no such file") from None
    except yaml.YAMLError as exc:
        raise CliError(f"--targets {path}: not YAML ({' '.join(str(exc).split())})") from None
    if isinstance(raw, list):
        raw = {"targets": raw}
    try:
        specs = _TargetsFile.model_validate(raw).targets
    except ValidationError as exc:
        raise CliError(f"--targets {path}: {validation_message(exc)}") from None
    return specs


def detect_style(model: str, root: str | None) -> tuple[Style, str]:
    for name in (model, root):
        if name and _CHAT_NAME.search(Path(name).name):
            return "chat", f"auto: {Path(name).name!r} names an instruct/chat model"
    return "base", "auto: no instruct/chat in the name"


def parse_assignments(
    values: Sequence[str], flag: str, allowed: Iterable[str] | None = None
) -> dict[str | None, str]:
    """`--flag VALUE` (key None: every model) or `--flag MODEL=VALUE`."""
    allowed = list(allowed) if allowed is not None else None
    out: dict[str | None, str] = {}
    for item in values:
        key, sep, value = item.rpartition("=")
        value = value.strip()
        if allowed is not None and value not in allowed:
            raise CliError(
                f"{flag} {item!r}: expected [MODEL=]VALUE with VALUE one of {', '.join(allowed)}"
            )
        if sep and not key.strip():
            raise CliError(f"{flag} {item!r}: the model name before '=' is empty")
        out[key.strip() if sep else None] = value
    return out


@dataclass(frozen=True)
class ServedModel:
    id: str
    root: str | None = None
    fim_template: str | None = None
    state: str | None = None


async def list_models(
    base_url: str,
    api_key: str | None,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[ServedModel] | None:
    """What `GET {base_url}/models` lists; None when the endpoint has no such route."""
    url = f"{base_url}/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(timeout=timeout_s, transport=transport, headers=headers) as http:
        try:
            response = await http.get(url)
        except httpx.TransportError as exc:
            raise CliError(
                f"cannot reach {url}: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from None
    if response.status_code in (401, 403):
        raise CliError(
            f"{url} refused the API key ({response.status_code}: {error_message(response)})"
        )
    if response.status_code != 200:
        return None
    try:
        data = orjson.loads(response.content).get("data") or []
        return [
            ServedModel(
                id=str(m["id"]),
                root=m.get("root"),
                fim_template=m.get("fim_template"),
                state=m.get("state"),
            )
            for m in data
        ]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
        return None


async def resolve_targets(
    specs: Sequence[TargetSpec],
    *,
    styles: Mapping[str | None, str],
    published: Mapping[str | None, str],
    api_key: str | None,
    timeout_s: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
    warn: Any = None,
    only: Sequence[str] = (),
) -> list[Target]:
    """The targets, checked against what each endpoint serves. `styles` / `published` are the
    user's `--format` / `--published` choices (key None: every model); `only`: of endpoints
    given without a model, just these models (each must be served by one of them)."""
    found: list[Target] = []
    listings: dict[tuple[str, str | None], list[ServedModel] | None] = {}
    for spec in specs:
        base_url = _base_url(spec.base_url)
        key = _spec_key(spec, api_key)
        if (base_url, key) not in listings:
            listings[(base_url, key)] = await list_models(base_url, key, timeout_s, transport)
        served = listings[(base_url, key)]
        if spec.model is None and only:
            by_id = {m.id: m for m in served or []}
            chosen = (
                [by_id[name] for name in only if name in by_id]
                if served
                else [ServedModel(id=name) for name in only]
            )
        elif spec.model is None:
            if not served:
                raise CliError(f"{base_url} lists no models; name them with --model")
            chosen = [m for m in served if m.state not in _NOT_SERVING]
            for m in served:
                if m.state in _NOT_SERVING and warn is not None:
                    warn(f"{m.id} at {base_url} is {m.state}; left out")
        else:
            by_id = {m.id: m for m in served or []}
            if served and spec.model not in by_id:
                raise CliError(
                    f"model {spec.model!r} is not served at {base_url} (served: {', '.join(by_id)})"
                )
            chosen = [by_id.get(spec.model) or ServedModel(id=spec.model)]
        for served_model in chosen:
            found.append(_target(spec, base_url, key, served_model, styles, published))
    absent = [name for name in only if name not in {t.model for t in found}]
    if absent:
        raise CliError(
            f"model {absent[0]!r} is not served at "
            f"{', '.join(dict.fromkeys(_base_url(s.base_url) for s in specs))}"
        )
    if not found:
        raise CliError("no models to compare")
    return _unique_labels(found)


def _base_url(url: str) -> str:
    try:
        return normalize_base_url(url)
    except (CliError, httpx.InvalidURL):
        raise CliError(
            f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {url!r}"
        ) from None


def _spec_key(spec: TargetSpec, api_key: str | None) -> str | None:
    if spec.api_key_env:
        import os

        value = os.environ.get(spec.api_key_env)
        if not value:
            raise CliError(
                f"targets file: ${spec.api_key_env} (api_key_env of {spec.base_url}) is not set"
            )
        return value
    return api_key


def _target(
    spec: TargetSpec,
    base_url: str,
    api_key: str | None,
    served: ServedModel,
    styles: Mapping[str | None, str],
    published: Mapping[str | None, str],
) -> Target:
    name = served.id
    chosen_style = styles.get(spec.label or "") or styles.get(name)
    source = "--format"
    if chosen_style is None and spec.format != "auto":
        chosen_style, source = spec.format, "targets file"
    if chosen_style is None:
        chosen_style = styles.get(None)
    if chosen_style in (None, "auto"):
        style, source = detect_style(name, served.root)
    else:
        style = "chat" if chosen_style == "chat" else "base"
    key_choice = published.get(spec.label or "") or published.get(name) or spec.published
    if key_choice is not None:
        if key_choice != "none" and key_choice not in BY_KEY:
            raise CliError(
                f"unknown published model {key_choice!r} (choose from: {', '.join(BY_KEY)}, none)"
            )
        pub_key = None if key_choice == "none" else key_choice
        pub_source = "set by the user"
    else:
        row = match(name, served.root)
        pub_key = row.key if row else None
        pub_source = "matched by name" if row else "no published row matches the name"
    fim = spec.fim if spec.fim is not None else served.fim_template is not None
    return Target(
        label=spec.label or name,
        base_url=base_url,
        model=name,
        root=served.root,
        style=style,
        style_source=source,
        fim=fim,
        published_key=pub_key,
        published_source=pub_source,
        api_key=api_key,
    )


def _unique_labels(targets: list[Target]) -> list[Target]:
    counts: dict[str, int] = {}
    for t in targets:
        counts[t.label] = counts.get(t.label, 0) + 1
    out = []
    for t in targets:
        if counts[t.label] > 1:
            host = httpx.URL(t.base_url)
            t = t.model_copy(
                update={"label": f"{t.label}@{host.host}:{host.port or ''}".rstrip(":")}
            )
        out.append(t)
    labels = [t.label for t in out]
    if len(set(labels)) != len(labels):
        dup = next(label for label in labels if labels.count(label) > 1)
        raise CliError(f"two targets are both called {dup!r}; give them labels in the targets file")
    return out


# -- the eval runs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One eval run folder: a target on a benchmark, greedy or sampled."""

    target: Target
    benchmark: str
    kind: PhaseKind
    run_dir: Path
    prompt_format: str | None  # None: the benchmark's base-model format
    n: int
    sampling: SamplingParams

    @property
    def name(self) -> str:
        return f"{self.target.label} {self.benchmark} {self.kind}"


def is_infill(benchmark: str) -> bool:
    return BENCHMARKS[benchmark].family is Family.INFILL


def prompt_format_for(style: Style, benchmark: str) -> str | None:
    if is_infill(benchmark):
        return "fim"
    return "chat" if style == "chat" else None


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "model"


def plan_phases(
    targets: Sequence[Target], settings: Settings, out_dir: Path
) -> tuple[list[Phase], dict[tuple[str, str], str]]:
    """The runs in order (target by target, benchmark by benchmark, greedy first), and the
    (label, benchmark) pairs left out with the reason."""
    phases: list[Phase] = []
    skipped: dict[tuple[str, str], str] = {}
    for target in targets:
        for benchmark in settings.benchmarks:
            if is_infill(benchmark) and not target.fim:
                skipped[(target.label, benchmark)] = (
                    "not FIM-capable (the endpoint reports no FIM template)"
                )
                continue
            fmt = prompt_format_for(target.style, benchmark)
            folder = out_dir / RUNS_DIR / slug(target.label)
            if settings.greedy:
                phases.append(
                    Phase(
                        target,
                        benchmark,
                        "greedy",
                        folder / f"{benchmark}-greedy",
                        fmt,
                        1,
                        SamplingParams(
                            temperature=0.0,
                            top_p=1.0,
                            max_tokens=settings.max_tokens,
                            seed=settings.seed,
                        ),
                    )
                )
            if settings.n > 0:
                phases.append(
                    Phase(
                        target,
                        benchmark,
                        "sampled",
                        folder / f"{benchmark}-t{settings.temperature:g}-p{settings.top_p:g}",
                        fmt,
                        settings.n,
                        SamplingParams(
                            temperature=settings.temperature,
                            top_p=settings.top_p,
                            max_tokens=settings.max_tokens,
                            seed=settings.seed,
                        ),
                    )
                )
    return phases, skipped


def eval_config(
    phase: Phase,
    settings: Settings,
    *,
    limit: int | None,
    data_dir: Path | None,
    timeout_s: float,
    retries: int,
    progress: bool,
) -> EvalConfig:
    return EvalConfig(
        benchmark=phase.benchmark,
        model=phase.target.model,
        endpoint=phase.target.base_url,
        n=phase.n,
        sampling=phase.sampling,
        limit=limit,
        out_dir=phase.run_dir,
        prompt_format=phase.prompt_format,
        stream=settings.stream,
        concurrency=settings.concurrency,
        max_n_per_request=settings.max_n_per_request,
        data_dir=data_dir,
        api_key=phase.target.api_key,
        timeout_s=timeout_s,
        max_retries=retries,
        progress=progress,
    )


# -- budgets ------------------------------------------------------------------------------------


def task_cap(
    limit: int | None, max_candidates: int | None, settings_n: int, greedy: bool, benchmarks: int
) -> int | None:
    """Tasks per benchmark the budget allows: `--limit`, and `--max-candidates` spread over
    every benchmark's tasks (each costs n sampled + 1 greedy candidate per model)."""
    cap = limit
    if max_candidates is not None:
        per_task = settings_n + (1 if greedy else 0)
        fits = max_candidates // (benchmarks * per_task)
        if fits < 1:
            raise CliError(
                f"--max-candidates {max_candidates} does not cover one task of each "
                f"benchmark ({benchmarks} x {per_task} candidates per model)"
            )
        cap = fits if cap is None else min(cap, fits)
    return cap


def round_limits(cap: int | None, largest: int, timed: bool) -> list[int | None]:
    """Task limits to run in order. Without a time budget, one round (the cap, None = all);
    with one, doubling rounds from FIRST_ROUND_TASKS, so every model always stops at the same
    task count (the budget is checked between rounds)."""
    top = largest if cap is None else min(cap, largest)
    if not timed:
        return [cap]
    limits: list[int | None] = []
    size = FIRST_ROUND_TASKS
    while size < top:
        limits.append(size)
        size *= 2
    limits.append(top)
    return limits


def next_round_fits(
    last_s: float, last_new_tasks: int, next_new_tasks: int, remaining_s: float
) -> bool:
    """Whether the next round should start: its cost, estimated from the last round's time per
    new task, fits in the time left."""
    if last_new_tasks <= 0:
        return remaining_s > 0
    return last_s / last_new_tasks * next_new_tasks <= remaining_s


def parse_duration(text: str) -> float:
    """`90`, `90s`, `20m`, `1.5h` -> seconds."""
    match_ = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text.lower())
    if not match_:
        raise CliError(f"--time-budget must be a duration such as 90s, 20m or 1h, got {text!r}")
    value = float(match_.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match_.group(2)]
    if value <= 0:
        raise CliError(f"--time-budget must be positive, got {text!r}")
    return value


def check_plan_file(out_dir: Path, targets: Sequence[Target]) -> None:
    """A bake-off folder keeps one endpoint per label: speed measured on two machines must not
    be summed into one figure. plan.json remembers which; a mismatch is an error."""
    path = out_dir / PLAN_FILE
    known: dict[str, str] = {}
    if path.exists():
        try:
            known = dict(json.loads(path.read_text()).get("endpoints", {}))
        except (ValueError, AttributeError, TypeError):
            raise CliError(f"{path}: not a bake-off plan file") from None
    for t in targets:
        if known.get(t.label, t.base_url) != t.base_url:
            raise CliError(
                f"{out_dir} holds runs of {t.label!r} at {known[t.label]}, not "
                f"{t.base_url}; use another --out (compare the two with "
                "`codeserve bakeoff compare`)"
            )
        known[t.label] = t.base_url
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"endpoints": known}, indent=2) + "\n")
