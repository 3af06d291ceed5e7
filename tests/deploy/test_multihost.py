"""The gateway and two engine replicas on three hosts (network namespaces on one bridge): traffic
is spread over both replicas, unplugging one keeps every request succeeding through the other,
and plugging it back brings it into rotation again. A second model reaches the same replicas
through one host name with `discover: true` (the gateway host's /etc/hosts plays the headless
Service's DNS): replicas follow the name's addresses without a restart. The replicas are the mock
vLLM server; the gateway is the real `codeserve serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.deploy.netlab import NetworkLab, unavailable_reason

REPO = Path(__file__).resolve().parents[2]
PORT = 8000
GATEWAY_PORT = 8080
MODEL = "mock"
DISCOVERED = "discovered"
ENGINES_NAME = "engines"
BATCH = 24
REPLICAS = ("r1", "r2")


@pytest.fixture(scope="module")
def lab() -> Iterator[NetworkLab]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"multi-host test skipped: {reason}")
    lab = NetworkLab()
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


def _run_in(lab: NetworkLab, host: str, *args: str, timeout: float = 90) -> dict:
    done = subprocess.run(
        lab.command(host, sys.executable, "-m", "tests.deploy.traffic", *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"traffic {args} in {host} failed: {done.stderr[-2000:]}"
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def stack(lab: NetworkLab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    logs = tmp_path_factory.mktemp("multihost")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    replicas = {}
    for name in REPLICAS:
        replicas[name] = lab.add_host(name)
    gateway = lab.add_host("gw")

    for name, address in replicas.items():
        lab.popen(
            name,
            [
                sys.executable,
                "-m",
                "codeserve.loadtest.mock_server",
                "--host",
                address,
                "--port",
                str(PORT),
                "--ttft-ms",
                "20",
                "--itl-ms",
                "5",
            ],
            log=(logs / f"{name}.log").open("wb"),
            cwd=REPO,
            env=env,
        )
    for name, address in replicas.items():
        assert _run_in(lab, "gw", "wait", f"http://{address}:{PORT}/health", "--timeout", "30")[
            "ok"
        ], (logs / f"{name}.log").read_text()

    # The discovered model starts with one replica behind the name.
    lab.set_hosts("gw", {ENGINES_NAME: [replicas["r1"]]})
    models = logs / "models.yaml"
    urls = ", ".join(f'"http://{addr}:{PORT}"' for addr in replicas.values())
    models.write_text(
        "models:\n"
        f"  - name: {MODEL}\n"
        "    model: mock-model\n"
        "    fim: none\n"
        f"    engine: {{kind: upstream, urls: [{urls}]}}\n"
        f"  - name: {DISCOVERED}\n"
        "    model: mock-model\n"
        "    fim: none\n"
        f'    engine: {{kind: upstream, urls: ["http://{ENGINES_NAME}:{PORT}"], discover: true,\n'
        "             discover_interval_s: 0.5}\n"
    )
    # Short timeouts so an unplugged replica is noticed within a second or two.
    gateway_env = dict(
        env,
        HF_HUB_OFFLINE="1",
        CODESERVE_HEALTH_INTERVAL_S="0.5",
        CODESERVE_HEALTH_TIMEOUT_S="1",
        CODESERVE_CONNECT_TIMEOUT_S="1",
        CODESERVE_READ_TIMEOUT_S="3",
        CODESERVE_EJECT_SECONDS="2",
    )
    log = logs / "gateway.log"
    lab.popen(
        "gw",
        [
            sys.executable,
            "-m",
            "codeserve.cli.main",
            "serve",
            "--models-file",
            str(models),
            "--host",
            gateway,
            "--port",
            str(GATEWAY_PORT),
        ],
        log=log.open("wb"),
        cwd=REPO,
        env=gateway_env,
    )
    base = f"http://{gateway}:{GATEWAY_PORT}"
    ready = _run_in(lab, "gw", "wait", f"{base}/ready", "--timeout", "60")
    assert ready["ok"], f"gateway not ready: {ready}\n{log.read_text()[-3000:]}"
    return {"base": base, "log": str(log), **replicas}


def _batch(
    lab: NetworkLab, stack: dict[str, str], model: str = MODEL, counted: tuple[str, ...] = REPLICAS
) -> dict:
    """BATCH completions through the gateway, with how many requests each `counted` replica
    received meanwhile (asked from the gateway's host, so only replicas it can reach)."""
    stats = [arg for r in counted for arg in ("--stats", f"http://{stack[r]}:{PORT}/mock/stats")]
    result = _run_in(
        lab,
        "gw",
        "complete",
        stack["base"],
        "--model",
        model,
        "--requests",
        str(BATCH),
        "--concurrency",
        "8",
        *stats,
    )
    result["received"] = {
        r: result["received"][f"http://{stack[r]}:{PORT}/mock/stats"] for r in counted
    }
    return result


def _all_ok(result: dict) -> bool:
    return result["statuses"] == [200] * BATCH


def _replica_healthy(lab: NetworkLab, base: str, replica: str) -> bool | None:
    """The gateway's codeserve_replica_healthy for one replica URL (None: not exported yet)."""
    text = _run_in(lab, "gw", "get", f"{base}/metrics", "--text")["text"]
    series = f'codeserve_replica_healthy{{model="{MODEL}",replica="{replica}"}}'
    for line in text.splitlines():
        if line.startswith(series):
            return float(line.split()[-1]) == 1.0
    return None


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.3)


def _spread(
    lab: NetworkLab, stack: dict[str, str], model: str = MODEL, counted: tuple[str, ...] = REPLICAS
) -> dict[str, int]:
    """Send one batch (all must succeed); how many requests each replica received."""
    result = _batch(lab, stack, model, counted)
    assert _all_ok(result), result
    return result["received"]


def test_replicas_share_traffic_survive_a_cut_link_and_rejoin(
    lab: NetworkLab, stack: dict[str, str]
) -> None:
    base, r1_url = stack["base"], f"http://{stack['r1']}:{PORT}"

    # 1. Both replicas take part.
    spread = _spread(lab, stack)
    assert spread["r1"] > 0 and spread["r2"] > 0, f"traffic not spread: {spread}"
    assert sum(spread.values()) == BATCH

    # 2. Unplug r1: once the gateway's health checks take it out, every request succeeds
    #    through r2 alone.
    lab.set_link("r1", up=False)
    _wait_for(lambda: _replica_healthy(lab, base, r1_url) is False, 15, "r1 marked unhealthy")
    for _ in range(2):  # r1 is out of reach: count r2's share only
        assert _spread(lab, stack, counted=("r2",)) == {"r2": BATCH}

    # 3. Plug r1 back: health checks bring it back into rotation.
    lab.set_link("r1", up=True)
    _wait_for(lambda: _replica_healthy(lab, base, r1_url) is True, 15, "r1 healthy again")
    _wait_for(lambda: _spread(lab, stack)["r1"] > 0, 15, "r1 to receive traffic again")


def test_discovered_replicas_follow_the_name_without_restart(
    lab: NetworkLab, stack: dict[str, str]
) -> None:
    assert _spread(lab, stack, DISCOVERED) == {"r1": BATCH, "r2": 0}

    # Scale up: the name now has both addresses.
    lab.set_hosts("gw", {ENGINES_NAME: [stack["r1"], stack["r2"]]})
    _wait_for(lambda: _spread(lab, stack, DISCOVERED)["r2"] > 0, 15, "r2 to be discovered")

    # Scale down: r1 leaves the name (a pod that stopped being ready). Every batch meanwhile
    # succeeds; once the refresh lands, r1 gets nothing.
    lab.set_hosts("gw", {ENGINES_NAME: [stack["r2"]]})
    _wait_for(lambda: _spread(lab, stack, DISCOVERED)["r1"] == 0, 15, "r1 to be dropped")
    assert _spread(lab, stack, DISCOVERED) == {"r1": 0, "r2": BATCH}


# Last in the module: requests it strands on the cut link may still reach r1 (TCP retransmits)
# after the link is back, which would skew the counts of any test after it.
def test_requests_sent_right_after_a_cut_fail_over(lab: NetworkLab, stack: dict[str, str]) -> None:
    base = stack["base"]
    spread = _spread(lab, stack)  # both replicas now hold pooled connections
    assert spread["r1"] > 0 and spread["r2"] > 0, f"traffic not spread: {spread}"
    lab.set_link("r1", up=False)
    try:
        result = _batch(lab, stack, counted=("r2",))  # before any health check could notice
    finally:
        lab.set_link("r1", up=True)
        _wait_for(
            lambda: _replica_healthy(lab, base, f"http://{stack['r1']}:{PORT}") is True,
            15,
            "r1 healthy again",
        )
    failed = [s for s in result["statuses"] if s != 200]
    # Requests stranded on r1's pooled keep-alive connections fail over (TCP_USER_TIMEOUT on
    # engine sockets) instead of waiting out the read timeout.
    assert not failed, f"requests failed right after r1 was unplugged: {result}"
