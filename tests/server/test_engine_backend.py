"""The managed-engine backend seam: which program serves which architecture, the transformers
serve command line, and the translation of OpenAI requests for it (fakes only, no engine)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import orjson
import pytest

from codeserve.server.config import ModelSpec
from codeserve.server.engines.backend import (
    TRANSFORMERS_ONLY,
    choose_backend,
    engine_profile,
)
from codeserve.server.engines.transformers_serve.command import transformers_command
from codeserve.server.engines.transformers_serve.requests import (
    collect_stream,
    engine_body,
    prompt_text,
    split_usage,
)
from codeserve.server.errors import InvalidRequestError, UpstreamError
from codeserve.server.fim.prompter import FimPrompter
from codeserve.server.fim.templates import BY_NAME
from codeserve.server.fim.tokenizer import ModelTokenizer
from codeserve.server.protocol import ChatCompletionRequest, CompletionRequest
from tests.server.fim_support import build_tokenizer_dirs


def spec_for(path: Path, **engine: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "m", "model": str(path), "engine": {"kind": "managed", **engine}}
    )


def checkpoint(tmp_path: Path, arch: str, **config: object) -> Path:
    path = tmp_path / arch
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"architectures": [arch], **config}))
    return path


@pytest.mark.parametrize(
    ("arch", "backend"),
    [
        ("CodeGenForCausalLM", "transformers"),
        ("XGLMForCausalLM", "transformers"),
        ("T5ForConditionalGeneration", "transformers"),
        ("Qwen2ForCausalLM", "vllm"),
        ("GlmForCausalLM", "vllm"),
        ("GPTJForCausalLM", "vllm"),
    ],
)
def test_auto_backend_by_architecture(tmp_path: Path, arch: str, backend: str) -> None:
    assert choose_backend(spec_for(checkpoint(tmp_path, arch))) == backend


def test_backend_override_and_hub_ids(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, "CodeGenForCausalLM")
    assert choose_backend(spec_for(path, backend="vllm")) == "vllm"
    assert choose_backend(spec_for(tmp_path / "missing")) == "vllm"
    qwen = checkpoint(tmp_path, "Qwen2ForCausalLM")
    assert choose_backend(spec_for(qwen, backend="transformers")) == "transformers"


def test_vllm_still_lacks_every_transformers_only_architecture() -> None:
    """If vLLM gains one of them, `auto` should send it back to vLLM: this test says so."""
    found = importlib.util.find_spec("vllm")
    assert found is not None and found.origin is not None
    registry = Path(found.origin).parent / "model_executor" / "models" / "registry.py"
    text = registry.read_text()
    assert '"GPTJForCausalLM"' in text  # the file is the registry we think it is
    for arch in TRANSFORMERS_ONLY:
        assert f'"{arch}"' not in text, arch


def test_profile_of_an_encoder_decoder(tmp_path: Path) -> None:
    path = checkpoint(tmp_path, "T5ForConditionalGeneration", eos_token_id=2, d_model=8)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 7]}))
    profile = engine_profile(spec_for(path))
    assert profile.backend == "transformers"
    assert profile.encoder_decoder and profile.eos_ids == [2, 7]
    assert profile.reported_name == f"{path}@main"
    codegen = checkpoint(tmp_path, "CodeGenForCausalLM", eos_token_id=5, n_positions=2048)
    profile = engine_profile(spec_for(codegen))
    assert not profile.encoder_decoder and profile.context_length == 2048


def test_transformers_command(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, backend="transformers", extra_args=["--trust-remote-code"])
    cmd = transformers_command(str(tmp_path), spec.engine, 1234)  # type: ignore[arg-type]
    assert cmd[1:5] == ["-m", "transformers.cli.transformers", "serve", str(tmp_path)]
    assert cmd[cmd.index("--port") + 1] == "1234"
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    assert cmd[-1] == "--trust-remote-code"


def completion(**body: object) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "x", **body})


def body_of(req: CompletionRequest, **kw: object) -> dict[str, object]:
    data = req.model_dump(exclude_unset=True, exclude_none=True)
    args: dict[str, object] = {"eos_ids": [2], "encoder_decoder": False, "max_tokens": 16}
    args.update(kw)
    return engine_body(req, data, None, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 2),
        ("best_of", 3),
        ("logprobs", 1),
        ("echo", True),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
        ("logit_bias", {"1": 2.0}),
        ("include_stop_str_in_output", True),
        ("skip_special_tokens", False),
    ],
)
def test_what_the_backend_cannot_do_is_a_400(field: str, value: object) -> None:
    with pytest.raises(InvalidRequestError, match="not supported by the transformers") as info:
        body_of(completion(**{field: value}))
    assert info.value.param == field
    assert info.value.status_code == 400


def test_chat_and_several_prompts_are_refused() -> None:
    chat = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    with pytest.raises(InvalidRequestError, match="/v1/completions"):
        engine_body(chat, {}, None, [2], False, 16)
    with pytest.raises(InvalidRequestError, match="several prompts") as info:
        body_of(completion(prompt=["a", "b"]))
    assert info.value.param == "prompt"
    with pytest.raises(InvalidRequestError, match="token ids"):
        body_of(completion(prompt=[1, 2, 3]))


def test_sampling_travels_as_generation_config() -> None:
    body = body_of(
        completion(
            temperature=0.7,
            top_p=0.9,
            top_k=40,
            seed=5,
            min_tokens=3,
            stop=["\n\n"],
            stop_token_ids=[9],
            repetition_penalty=1.1,
        ),
        eos_ids=[2, 4],
    )
    assert body["prompt"] == "x" and body["max_tokens"] == 16 and body["seed"] == 5
    assert body["stop"] == ["\n\n"] and body["stream"] is False
    config = json.loads(str(body["generation_config"]))
    assert config == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "repetition_penalty": 1.1,
        "eos_token_id": [2, 4, 9],
        "min_new_tokens": 3,
    }
    greedy = json.loads(
        str(body_of(completion(temperature=0, ignore_eos=True))["generation_config"])
    )
    assert greedy == {"do_sample": False}
    # transformers' non-streamed answer is wrong for encoder-decoders: always streamed.
    assert body_of(completion(), encoder_decoder=True)["stream"] is True


@pytest.fixture(scope="module")
def incoder(tmp_path_factory: pytest.TempPathFactory) -> FimPrompter:
    dirs = build_tokenizer_dirs(tmp_path_factory.mktemp("incoder-tok"), ["incoder"])
    tokenizer = ModelTokenizer.from_file(
        dirs["incoder"] / "tokenizer.json", BY_NAME["incoder"].control_spellings()
    )
    return FimPrompter(BY_NAME["incoder"], tokenizer)


def test_fim_ids_go_as_text_that_tokenizes_back(incoder: FimPrompter) -> None:
    ids = incoder.render("def f(a):\n    ", "\n    return a\n").token_ids
    text = prompt_text(ids, incoder.tokenizer)
    assert text == "def f(a):\n    <|mask:0|>\n    return a\n<|mask:1|><|mask:0|>"
    assert incoder.tokenizer.encode_prompt(text) == ids


def test_control_spellings_in_code_cannot_reach_the_engine_as_text(incoder: FimPrompter) -> None:
    ids = incoder.render("x = '<|mask:0|>'\n", "y = 1\n").token_ids
    assert ids.count(incoder.prefix_id) == 2  # the gateway's ids keep the code as text...
    with pytest.raises(InvalidRequestError, match="cannot be sent") as info:
        prompt_text(ids, incoder.tokenizer)  # ...but the engine would parse it: refused
    assert info.value.code == "tokenizer_injection"


def test_collect_stream_assembles_one_completion() -> None:
    chunks = [
        {"id": "c1", "created": 7, "choices": [{"index": 0, "text": "ab"}]},
        {"id": "c1", "created": 7, "choices": [{"index": 0, "text": "c"}]},
        {
            "id": "c1",
            "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
    ]
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    answer = json.loads(collect_stream(raw, "m@main"))
    assert answer["choices"] == [
        {"index": 0, "text": "abc", "logprobs": None, "finish_reason": "length"}
    ]
    assert answer["usage"]["completion_tokens"] == 2 and answer["id"] == "c1"
    with pytest.raises(UpstreamError, match="boom"):
        collect_stream(b'data: {"error": "boom"}\n\n', "m@main")


def test_usage_gets_a_chunk_of_its_own() -> None:
    last = {
        "id": "c1",
        "choices": [{"index": 0, "text": "", "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    middle = b'data: {"id":"c1","choices":[{"index":0,"text":"a"}]}\n\n'
    assert split_usage(middle) == middle
    events = split_usage(middle + b"data: " + orjson.dumps(last) + b"\n\n")
    chunks = [json.loads(e[6:]) for e in events.split(b"\n\n") if e]
    assert chunks[1] == {"id": "c1", "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}
    assert chunks[2] == {"id": "c1", "choices": [], "usage": last["usage"]}
    assert b'"choices":[]' in events  # the mark the gateway's usage accounting looks for
