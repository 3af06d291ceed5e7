"""Graceful shutdown of the real `codeserve serve` process: SIGTERM drains (readiness fails,
new requests get 503, requests in flight finish), then the process and its children exit."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import psutil

from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServerThread
from tests.server.gateway_process import GatewayProcess, gateway_process
from tests.stack import wait_until

SHUTTING_DOWN = {
    "error": {
        "message": "the gateway is shutting down; retry on another replica",
        "type": "service_unavailable",
        "param": None,
        "code": "shutting_down",
    }
}


def post_in_background(
    url: str, body: dict, results: list[httpx.Response | Exception]
) -> threading.Thread:
    def run() -> None:
        try:
            results.append(httpx.post(url + "/v1/completions", json=body, timeout=60))
        except httpx.HTTPError as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def children_of(gateway: GatewayProcess) -> list[psutil.Process]:
    return psutil.Process(gateway.process.pid).children(recursive=True)


def assert_gone(processes: list[psutil.Process], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    assert not alive, f"left behind: {[(p.pid, p.cmdline()) for p in alive]}"


def test_sigterm_drains_then_exits(tmp_path: Path) -> None:
    mock = MockServerThread(MockConfig(ttft_ms=3000, itl_ms=0))
    # Scoring on: its sandbox workers are children that must not outlive the gateway.
    with (
        mock as mock_url,
        gateway_process(
            tmp_path,
            {"coder": mock_url},
            CODESERVE_SHUTDOWN_GRACE_S="20",
            CODESERVE_SCORING_ENABLED="1",
        ) as gateway,
    ):
        children = children_of(gateway)
        assert children, "expected the scoring sandbox's worker processes"
        results: list[httpx.Response | Exception] = []
        slow = post_in_background(
            gateway.url, {"model": "coder", "prompt": "x", "max_tokens": 3}, results
        )
        wait_until(
            lambda: mock.stats.running == 1,
            timeout=5,
            interval=0.02,
            what="the slow request to reach the engine",
        )
        gateway.process.send_signal(signal.SIGTERM)

        ready = wait_until(
            lambda: (lambda r: r if r.status_code == 503 else None)(
                httpx.get(gateway.url + "/ready", timeout=2)
            ),
            timeout=2,
            interval=0.05,
            what="/ready to fail",
        )
        assert ready.json()["ready"] is False and ready.headers["retry-after"]
        new = httpx.post(
            gateway.url + "/v1/completions",
            timeout=5,
            json={"model": "coder", "prompt": "x", "max_tokens": 1},
        )
        assert new.status_code == 503 and new.json() == SHUTTING_DOWN
        assert new.headers["retry-after"] == "5" and new.headers["connection"] == "close"
        assert httpx.get(gateway.url + "/health", timeout=2).status_code == 200
        assert gateway.process.poll() is None  # still draining while the request runs

        slow.join(timeout=10)
        [answer] = results
        assert isinstance(answer, httpx.Response) and answer.status_code == 200, answer
        assert len(answer.json()["choices"][0]["text"]) > 0
        gateway.process.wait(timeout=15)
        assert mock.stats.received == 1 and mock.stats.completed == 1
    assert_gone(children)
    log = gateway.log()
    assert "draining" in log and "drained; shutting down" in log


def test_grace_period_bounds_the_drain(tmp_path: Path) -> None:
    mock = MockServerThread(MockConfig(ttft_ms=120_000))
    with (
        mock as mock_url,
        gateway_process(tmp_path, {"coder": mock_url}, CODESERVE_SHUTDOWN_GRACE_S="1") as gateway,
    ):
        results: list[httpx.Response | Exception] = []
        slow = post_in_background(gateway.url, {"model": "coder", "prompt": "x"}, results)
        wait_until(
            lambda: mock.stats.running == 1,
            timeout=5,
            interval=0.02,
            what="the slow request to reach the engine",
        )
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        gateway.process.wait(timeout=30)
        took = time.monotonic() - started
        slow.join(timeout=10)
        # One second of grace plus process teardown, nowhere near the request's 120 s (the
        # margin absorbs a loaded machine: teardown alone took 7 s under load average 8).
        assert took < 20, took
        wait_until(
            lambda: mock.stats.aborted == 1,
            timeout=5,
            interval=0.05,
            what="the engine request to be aborted",
        )
    assert "cutting 1 request(s) still in flight" in gateway.log()
    assert not isinstance(results[0], httpx.Response) or results[0].status_code != 200
