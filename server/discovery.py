"""Replica discovery: expand an upstream URL whose host names a Kubernetes headless Service (or any
DNS name with several addresses) into one URL per address, and keep that set fresh.

A headless Service publishes one DNS record per *ready* pod, so re-resolving it every few seconds
tells the gateway's replica pool which engine pods exist right now: scaling the engine Deployment
up or down adds or removes replicas without restarting the gateway.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import cast
from urllib.parse import SplitResult, urlsplit, urlunsplit

log = logging.getLogger(__name__)

# (host, port) -> getaddrinfo-style tuples. The default is the running loop's getaddrinfo, which
# runs the blocking libc call in the loop's executor; tests pass a fake.
AddrInfo = tuple[int, int, int, str, tuple]  # (family, type, proto, canonname, sockaddr)
Resolver = Callable[[str, int], Awaitable[list[AddrInfo]]]
OnChange = Callable[[list[str]], Awaitable[None] | None]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Names that are one machine however many addresses they have: expanding them would count one
# engine several times (127.0.0.1 and ::1).
_NEVER_EXPANDED = {"localhost", "localhost.localdomain", "ip6-localhost"}


async def _loop_getaddrinfo(host: str, port: int) -> list[AddrInfo]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return cast(list[AddrInfo], infos)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_host(parts: SplitResult, address: str) -> str:
    """`parts` with its host replaced by `address`; user info, port, path and query are kept."""
    host = f"[{address}]" if ":" in address else address
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _one_family(infos: Sequence[AddrInfo]) -> list[str]:
    """Unique addresses of the family the resolver ranked first (RFC 6724 order).

    A dual-stack pod has an A and an AAAA record; keeping both families would count each pod
    twice.
    """
    if not infos:
        return []
    family = infos[0][0]
    seen: dict[str, None] = {}
    for fam, _type, _proto, _canon, sockaddr in infos:
        if fam != family:
            continue
        seen.setdefault(sockaddr[0], None)
    return list(seen)


async def resolve(url: str, *, resolver: Resolver | None = None) -> list[str]:
    """One URL per address the URL's host resolves to, sorted for a stable order.

    IP literals and localhost come back unchanged (no lookup). Raises `OSError`
    (`socket.gaierror`) when the name does not resolve: the caller decides whether an empty or
    unknown answer means "no replicas" or "DNS blip, keep what you had".
    """
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f"upstream URL has no host: {url!r}")
    if _is_ip_literal(host) or host.lower() in _NEVER_EXPANDED:
        return [url]
    port = parts.port if parts.port is not None else _DEFAULT_PORTS.get(parts.scheme, 80)
    infos = await (resolver or _loop_getaddrinfo)(host, port)
    return sorted(_with_host(parts, address) for address in _one_family(infos))


class ReplicaRefresher:
    """Re-resolves a model's upstream URLs every `interval_s` and reports the replica URL set.

    `on_change` (plain or async) is called with the sorted URL list after the first resolution and
    whenever the set changes afterwards. A URL that fails to resolve keeps its last known
    expansion, so a DNS hiccup never empties the pool; one that has never resolved contributes
    nothing until it does (the pool's health checks cover replicas that died meanwhile).
    """

    def __init__(
        self,
        urls: Sequence[str],
        on_change: OnChange,
        *,
        interval_s: float = 10.0,
        resolver: Resolver | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._urls = list(urls)
        self._on_change = on_change
        self._interval_s = interval_s
        self._resolver = resolver
        self._known: dict[str, list[str]] = {}
        self._current: list[str] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def current(self) -> list[str]:
        """The replica URLs last reported (empty before the first refresh)."""
        return list(self._current or [])

    async def refresh(self) -> list[str]:
        """Resolve every URL once; report and return the new set."""
        for url in self._urls:
            try:
                self._known[url] = await resolve(url, resolver=self._resolver)
            except OSError as exc:
                log.warning(
                    "discovery: cannot resolve %s (%s); keeping %d known replica(s)",
                    url,
                    exc,
                    len(self._known.get(url, [])),
                )
        found = sorted({u for url in self._urls for u in self._known.get(url, [])})
        if found != self._current:
            log.info("discovery: replicas of %s are now %s", self._urls, found)
            outcome = self._on_change(list(found))
            if inspect.isawaitable(outcome):
                await outcome
            # Only after the callback took it: a failed report is retried on the next refresh.
            self._current = found
        return found

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failing callback must not end discovery for good
                log.exception("discovery: refresh of %s failed", self._urls)
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        """Refresh now and then every `interval_s` in a background task of the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"discovery:{','.join(self._urls)}"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
