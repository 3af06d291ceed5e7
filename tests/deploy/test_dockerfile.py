"""The Dockerfile, read by a small parser (no Docker engine needed; test_docker.py builds and
runs the images for real): its stages chain up, every image target runs as a non-root user with a
curl-free HEALTHCHECK and SIGTERM, installs through scripts/install.sh like the README says, and
copies only what .dockerignore lets through."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = {"gateway": "--no-engine", "cpu": "--cpu", "gpu": "--gpu"}


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [arg for kw, arg in self.instructions if kw == keyword]
        return values[-1] if values else None


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, flags=re.IGNORECASE)
            assert match, f"bad FROM: {line}"
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            stages.append(Stage(base=base, name=match.group(2) or str(len(stages))))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede the first FROM: {line}"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    _, parsed = parse((REPO / "Dockerfile").read_text())
    by_name = {s.name: s for s in parsed}
    assert len(by_name) == len(parsed), "duplicate stage names"
    assert parsed[-1].name == "gateway", "the default target (last stage) is the gateway"
    return by_name


def _chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def _effective(stages: dict[str, Stage], name: str, keyword: str) -> str | None:
    for stage in _chain(stages, name):
        value = stage.last(keyword)
        if value is not None:
            return value
    return None


def _exec_form(value: str) -> list[str]:
    assert value.startswith("["), f"use the exec form (no shell): {value}"
    return json.loads(value)


def _healthcheck_argv(value: str) -> list[str]:
    options, _, command = value.partition("CMD ")
    assert command, f"HEALTHCHECK without CMD: {value}"
    for option in shlex.split(options):
        assert re.fullmatch(r"--(interval|timeout|start-period|retries)=\w+", option), option
    return _exec_form(command.strip())


def test_stages_chain_from_images_or_earlier_stages(stages: dict[str, Stage]) -> None:
    seen: set[str] = set()
    for stage in stages.values():
        if stage.base not in stages:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+", stage.base), (
                f"stage {stage.name}: base image {stage.base!r} must be pinned to a tag"
            )
        else:
            assert stage.base in seen, f"{stage.name} builds FROM a later stage"
        for keyword, arg in stage.instructions:
            if keyword == "COPY" and "--from=" in arg:
                source = re.search(r"--from=(\S+)", arg).group(1)
                assert source in seen, f"{stage.name} copies from unknown stage {source}"
        seen.add(stage.name)


def test_gpu_image_builds_on_the_official_vllm_image(stages: dict[str, Stage]) -> None:
    assert _chain(stages, "gpu")[-1].base.startswith("vllm/vllm-openai:")
    assert _chain(stages, "build-gpu")[-1].base.startswith("vllm/vllm-openai:")
    for name in ("gateway", "cpu"):
        assert "vllm" not in _chain(stages, name)[-1].base


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_targets_run_unprivileged_with_healthcheck_and_sigterm(
    stages: dict[str, Stage], target: str
) -> None:
    user = _effective(stages, target, "USER")
    assert user and user.split(":")[0] not in {"root", "0"}, f"{target} runs as {user!r}"
    assert _effective(stages, target, "STOPSIGNAL") == "SIGTERM"
    argv = _healthcheck_argv(_effective(stages, target, "HEALTHCHECK") or "")
    assert argv[0] == "python" and "/health" in argv[-1]
    assert not {"curl", "wget"} & set(re.findall(r"[a-z]+", " ".join(argv)))
    assert _exec_form(_effective(stages, target, "ENTRYPOINT")) == ["codeserve"]
    assert _exec_form(_effective(stages, target, "CMD")) == ["serve"]
    assert "8080" in (_effective(stages, target, "EXPOSE") or "")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_target_is_installed_by_install_sh(stages: dict[str, Stage], target: str) -> None:
    """The venv a target copies in was made by scripts/install.sh with that flavour's flags."""
    copies = [arg for kw, arg in stages[target].instructions if kw == "COPY" and "--from=" in arg]
    builders = {re.search(r"--from=(\S+)", arg).group(1) for arg in copies}
    assert len(builders) == 1, copies
    runs = " ".join(arg for kw, arg in stages[builders.pop()].instructions if kw == "RUN")
    match = re.search(r"\S*scripts/install\.sh((?:\s+--[\w-]+)+)", runs)
    assert match, f"{target}: not installed through scripts/install.sh"
    flags = match.group(1).split()
    assert TARGETS[target] in flags and "--no-dev" in flags
    accepted = set(
        re.findall(
            r"^\s*(--[\w-]+)\)", (REPO / "scripts/install.sh").read_text(), flags=re.MULTILINE
        )
    )
    assert set(flags) <= accepted, f"install.sh does not accept {set(flags) - accepted}"


def test_readme_installs_through_the_same_script(stages: dict[str, Stage]) -> None:
    readme = (REPO / "deploy" / "README.md").read_text()
    for target, flag in TARGETS.items():
        assert f"docker build --target {target}" in readme
        assert f"scripts/install.sh {flag}" in readme, (
            f"README does not show the install.sh flags of the {target} image"
        )


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes."""
    allowed = True
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or (
            pattern.startswith("**/") and fnmatch.fnmatch(Path(path).name, pattern[3:])
        ):
            allowed = negate
    return allowed


def test_copied_sources_exist_and_pass_dockerignore(stages: dict[str, Stage]) -> None:
    copied = 0
    for stage in stages.values():
        for keyword, arg in stage.instructions:
            if keyword != "COPY" or "--from=" in arg:
                continue
            *sources, _dest = arg.split()
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: missing"
                assert _dockerignore_allows(source), f"COPY {source}: excluded by .dockerignore"
                copied += 1
    assert copied >= 5
    for kept_out in (".venv/bin/python", ".git/HEAD", "tests/conftest.py"):
        assert not _dockerignore_allows(kept_out), f"{kept_out} would be sent to the builder"
    assert _dockerignore_allows("server/app.py")
    assert not _dockerignore_allows("server/__pycache__/app.cpython-311.pyc")


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_command_really_checks_health(
    stages: dict[str, Stage], health_server: http.server.HTTPServer
) -> None:
    """Run the image's HEALTHCHECK one-liner against a local server: 0 on 200, not 0 otherwise."""
    argv = _healthcheck_argv(_effective(stages, "gateway", "HEALTHCHECK") or "")
    argv = [sys.executable, *argv[1:]]
    env = dict(os.environ, CODESERVE_PORT=str(health_server.server_address[1]))

    def exit_code(status: int) -> int:
        _Health.status = status
        return subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode

    assert exit_code(200) == 0
    assert exit_code(503) != 0
    closed = dict(env, CODESERVE_PORT="1")
    assert subprocess.run(argv, env=closed, capture_output=True, timeout=30).returncode != 0
