"""The gateway as a real `codeserve serve` subprocess in front of upstream URLs (mock engines):
for behaviour that needs the real process (signals, shutdown, its own logging set-up)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.stack import free_port, ready, start_gateway, stop_gateway, wait_until


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def upstream_models_yaml(upstreams: dict[str, str]) -> str:
    lines = ["models:"]
    for name, url in upstreams.items():
        lines += [
            f"  - name: {name}",
            f"    model: org/{name}",
            "    engine:",
            "      kind: upstream",
            f"      urls: ['{url}']",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def gateway_process(
    tmp_path: Path, upstreams: dict[str, str], **env: str
) -> Iterator[GatewayProcess]:
    """A gateway subprocess (default settings but `env`), yielded once /ready answers 200."""
    models_file = tmp_path / "models.yaml"
    models_file.write_text(upstream_models_yaml(upstreams))
    port = free_port()
    log_path = tmp_path / "gateway.log"
    proc = start_gateway(models_file, log_path, port, **env)
    gateway = GatewayProcess(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_until(
            lambda: proc.poll() is not None or ready(gateway.url + "/ready"),
            timeout=60,
            interval=0.2,
            what="the gateway to become ready",
        )
        assert proc.poll() is None, f"gateway exited:\n{gateway.log()}"
        yield gateway
    finally:
        stop_gateway(proc, timeout=30)


async def raw_request(
    url: str, request_line: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client-side path normalisation); status and body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [
        request_line,
        f"Host: {host}:{port}",
        f"Content-Length: {len(body)}",
        "Content-Type: application/json",
        "Connection: close",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
