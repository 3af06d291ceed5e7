"""Bearer API keys, checked for every route but a few exact open paths.

Deny by default: a path is open only if it equals an open path exactly, so `//v1/...`, encoded
slashes or dot segments can never slip past the check. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from codeserve.common.errors import ConfigError
from codeserve.server.config import Settings
from codeserve.server.errors import AuthenticationError


def load_api_keys(settings: Settings) -> list[bytes]:
    keys = list(settings.api_keys)
    if settings.api_keys_file is not None:
        try:
            text = settings.api_keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read API keys file {settings.api_keys_file}: {exc.strerror or exc}"
            ) from None
        keys += [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return [k.encode() for k in keys]


def key_matches(candidate: bytes, keys: list[bytes]) -> bool:
    # Compare against every key so timing does not reveal which (or whether any) key is close.
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate, key)
    return found


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: list[bytes],
        open_paths: frozenset[str],
        on_error: Callable[..., Any],
        dialect_error: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.open_paths = open_paths
        self.on_error = on_error
        # Paths of other API dialects (Ollama, TGI) refuse in their own error shape.
        self.dialect_error = dialect_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or (
            scope["type"] == "http" and scope["path"] in self.open_paths
        ):
            await self.app(scope, receive, send)
            return
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, rest = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    token = rest.strip()
                break
        if not token or not key_matches(token, self.keys):
            if scope["type"] != "http":  # a websocket: no HTTP response to send, just refuse
                await send({"type": "websocket.close", "code": 1008})
                return
            message = "missing or invalid API key (send 'Authorization: Bearer <key>')"
            headers = {"WWW-Authenticate": "Bearer"}
            response = self.dialect_error and self.dialect_error(
                scope["path"], AuthenticationError(message, headers=headers)
            )
            if response is None:
                response = self.on_error(401, message, code="invalid_api_key", headers=headers)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
