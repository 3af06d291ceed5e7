"""Keystroke traffic (codeserve.loadtest.keystroke) through the real gateway to a mock engine:
users type, each keystroke cancels the previous request, and the engine sees those aborts."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from codeserve.loadtest.keystroke import KeystrokeSpec, run_keystroke, summarize
from codeserve.loadtest.mock_config import MockConfig
from codeserve.loadtest.mock_server import MockServer
from tests.server import fim_support
from tests.server.fim_support import models_for
from tests.server.gateway_harness import running_gateway

tokenizer_dirs = fim_support.tokenizer_dirs  # the session fixture of demo tokenizers


async def test_keystrokes_cancel_stale_requests(
    tokenizer_dirs: dict[str, Path], data_dir: Path
) -> None:
    # 150 ms to the first token, then 20 ms a token: a keystroke 50-300 ms later often
    # arrives while the previous suggestion is still coming.
    mock = MockServer(MockConfig(ttft_ms=150, itl_ms=20))
    async with mock:
        models = models_for({"coder": tokenizer_dirs["qwen2.5-coder"]}, urls=[mock.url])
        async with running_gateway(models) as url:
            spec = KeystrokeSpec(
                base_url=url + "/v1",
                model="coder",
                users=3,
                duration_s=4,
                max_tokens=16,
                pause_s=(0.1, 0.3),
            )
            result = await run_keystroke(spec, data_dir)
            await asyncio.sleep(0.3)
    s = result.summary
    assert s.source == "humaneval" and not s.errors
    assert s.requests >= 20 and s.cancelled > 0 and s.completed > 0
    assert s.requests == s.completed + s.cancelled
    assert 0 < s.cancelled_share < 1
    # Every cancelled request the engine had started was aborted there, not finished.
    assert mock.stats.aborted >= s.cancelled - s.cancelled_before_first_token
    assert mock.stats.completed == s.completed
    assert s.ttft_ms.count == s.completed and s.ttft_ms.p50 is not None
    assert s.ttft_ms.p50 >= 150
    assert s.tokens_completed == 16 * s.completed
    assert s.tokens_wasted > 0 and 0 < s.waste_share < 1


def test_summary_of_no_requests() -> None:
    s = summarize([], 1.0, "synthetic")
    assert s.requests == 0 and s.cancelled_share == 0 and s.ttft_ms.p50 is None


def test_cli_workload_keystroke(
    tokenizer_dirs: dict[str, Path], tmp_path: Path, capsys: object
) -> None:
    from codeserve.cli.main import main
    from codeserve.loadtest.mock_server import MockServerThread

    async def serve(mock_url: str, done: asyncio.Event, url: list[str]) -> None:
        models = models_for({"coder": tokenizer_dirs["qwen2.5-coder"]}, urls=[mock_url])
        async with running_gateway(models) as gateway:
            url.append(gateway)
            await done.wait()

    with MockServerThread(MockConfig(ttft_ms=50, itl_ms=10)) as mock_url:
        loop = asyncio.new_event_loop()
        done = asyncio.Event()
        url: list[str] = []
        thread = threading.Thread(
            target=loop.run_until_complete, args=(serve(mock_url, done, url),)
        )
        thread.start()
        try:
            while not url:
                thread.join(0.05)
            code = main(
                [
                    "loadtest",
                    "--base-url",
                    url[0] + "/v1",
                    "--workload",
                    "keystroke",
                    "--concurrency",
                    "2",
                    "--duration",
                    "2",
                    "--max-tokens",
                    "8",
                    "--out",
                    str(tmp_path / "ks"),
                ]
            )
        finally:
            loop.call_soon_threadsafe(done.set)
            thread.join(30)
    assert code == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "keystroke: 2 users" in out and "TTFT of requests not cancelled" in out
    saved = json.loads((tmp_path / "ks" / "keystroke.json").read_text())
    assert saved["kind"] == "keystroke" and saved["summary"]["requests"] > 0
