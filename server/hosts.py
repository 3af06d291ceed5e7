"""Host header allow-list (off unless `allowed_hosts` is set).

Same matching as Starlette's TrustedHostMiddleware (exact names, `*.example.com`, `*`), which is
not used directly for two reasons: the health probes must stay reachable under any Host
(Kubernetes probes send the pod IP), and a refusal must use the gateway's one error shape rather
than a plain-text body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send


def host_name(header: str | None) -> str | None:
    """The host part of a Host header (`name`, `name:port`, `[v6]:port`), lower-cased."""
    if not header:
        return None
    if header.startswith("["):
        end = header.find("]")
        return header[1:end].lower() if end > 0 else None
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


class AllowedHostsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Sequence[str],
        probe_paths: frozenset[str],
        on_error: Callable[..., Any],
    ) -> None:
        self.app = app
        self.patterns = [p.lower() for p in allowed_hosts]  # validated by Settings
        self.probe_paths = probe_paths
        self.on_error = on_error

    def allowed(self, host: str | None) -> bool:
        if host is None:
            return False
        return any(
            p == "*" or host == p or (p.startswith("*.") and host.endswith(p[1:]))
            for p in self.patterns
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.probe_paths:
            await self.app(scope, receive, send)
            return
        if not self.allowed(host_name(Headers(scope=scope).get("host"))):
            response = self.on_error(400, "Host header not allowed", code="invalid_host")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
