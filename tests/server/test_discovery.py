"""Replica discovery with a fake resolver (no DNS traffic)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from codeserve.server.discovery import AddrInfo, ReplicaRefresher, resolve


def _v4(address: str, port: int) -> AddrInfo:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))


def _v6(address: str, port: int) -> AddrInfo:
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))


class FakeDNS:
    """A resolver whose answers the test changes; records the lookups it was asked for."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[AddrInfo]:
        self.lookups.append((host, port))
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(_v6 if ":" in a else _v4)(a, port) for a in self.records[host]]


async def test_resolve_expands_headless_service_keeping_scheme_port_and_path() -> None:
    dns = FakeDNS({"vllm-qwen.codeserve.svc": ["10.0.0.7", "10.0.0.3", "10.0.0.7"]})
    urls = await resolve("http://vllm-qwen.codeserve.svc:8000/base?x=1", resolver=dns)
    assert urls == ["http://10.0.0.3:8000/base?x=1", "http://10.0.0.7:8000/base?x=1"]
    assert dns.lookups == [("vllm-qwen.codeserve.svc", 8000)]


async def test_resolve_brackets_ipv6_and_uses_scheme_default_port() -> None:
    dns = FakeDNS({"engines": ["fd00::2", "fd00::1"]})
    assert await resolve("https://engines", resolver=dns) == [
        "https://[fd00::1]",
        "https://[fd00::2]",
    ]
    assert dns.lookups == [("engines", 443)]


async def test_resolve_keeps_one_family_so_dual_stack_pods_count_once() -> None:
    dns = FakeDNS({"svc": ["fd00::1", "10.0.0.1", "fd00::2", "10.0.0.2"]})
    assert await resolve("http://svc:8000", resolver=dns) == [
        "http://[fd00::1]:8000",
        "http://[fd00::2]:8000",
    ]


async def test_resolve_keeps_user_info() -> None:
    dns = FakeDNS({"svc": ["10.0.0.1"]})
    assert await resolve("http://u:p@svc:81/v", resolver=dns) == ["http://u:p@10.0.0.1:81/v"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://[::1]:9000/x", "http://localhost:8000"]
)
async def test_resolve_leaves_literals_and_localhost_alone(url: str) -> None:
    dns = FakeDNS({})
    assert await resolve(url, resolver=dns) == [url]
    assert dns.lookups == []


async def test_resolve_raises_for_unknown_name_and_rejects_hostless_url() -> None:
    with pytest.raises(OSError):
        await resolve("http://nowhere:8000", resolver=FakeDNS({}))
    with pytest.raises(ValueError):
        await resolve("http:///v1", resolver=FakeDNS({}))


async def test_resolve_uses_the_event_loop_resolver_by_default() -> None:
    # Literals and localhost skip DNS, so look up this machine's own name (from /etc/hosts).
    hostname = socket.gethostname()
    try:
        expected = {
            info[4][0] for info in socket.getaddrinfo(hostname, 80, type=socket.SOCK_STREAM)
        }
    except OSError:
        pytest.skip(f"this machine cannot resolve its own host name {hostname!r}")
    urls = await resolve(f"http://{hostname}:80")
    assert urls and all(u.startswith("http://") and u.endswith(":80") for u in urls)
    assert {u[len("http://") : -len(":80")].strip("[]") for u in urls} <= expected


async def test_refresher_reports_initial_set_and_only_changes() -> None:
    dns = FakeDNS({"a": ["10.0.0.1"], "b": ["10.0.1.1"]})
    reports: list[list[str]] = []
    refresher = ReplicaRefresher(["http://a:8000", "http://b:9000"], reports.append, resolver=dns)

    await refresher.refresh()
    await refresher.refresh()  # nothing changed: no second report
    dns.records["a"] = ["10.0.0.1", "10.0.0.2"]  # scaled up
    await refresher.refresh()
    dns.records["a"] = ["10.0.0.2"]  # one pod gone
    await refresher.refresh()

    assert reports == [
        ["http://10.0.0.1:8000", "http://10.0.1.1:9000"],
        ["http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://10.0.1.1:9000"],
        ["http://10.0.0.2:8000", "http://10.0.1.1:9000"],
    ]
    assert refresher.current == reports[-1]


async def test_refresher_keeps_last_known_replicas_when_dns_fails() -> None:
    dns = FakeDNS({"a": ["10.0.0.1"], "b": ["10.0.1.1"]})
    reports: list[list[str]] = []
    refresher = ReplicaRefresher(["http://a", "http://b"], reports.append, resolver=dns)
    await refresher.refresh()
    del dns.records["a"]  # DNS blip for one name
    assert await refresher.refresh() == ["http://10.0.0.1", "http://10.0.1.1"]
    assert len(reports) == 1


async def test_refresher_never_resolved_name_contributes_nothing_until_it_does() -> None:
    dns = FakeDNS({})
    reports: list[list[str]] = []
    refresher = ReplicaRefresher(["http://late:8000"], reports.append, resolver=dns)
    assert await refresher.refresh() == []
    dns.records["late"] = ["10.0.0.9"]
    assert await refresher.refresh() == ["http://10.0.0.9:8000"]
    assert reports == [[], ["http://10.0.0.9:8000"]]


async def test_refresher_retries_a_report_whose_callback_failed() -> None:
    dns = FakeDNS({"a": ["10.0.0.1"]})
    calls: list[list[str]] = []

    async def flaky(urls: list[str]) -> None:
        calls.append(urls)
        if len(calls) == 1:
            raise RuntimeError("pool busy")

    refresher = ReplicaRefresher(["http://a"], flaky, resolver=dns)
    with pytest.raises(RuntimeError):
        await refresher.refresh()
    assert refresher.current == []
    await refresher.refresh()
    assert calls == [["http://10.0.0.1"], ["http://10.0.0.1"]]
    assert refresher.current == ["http://10.0.0.1"]


async def test_refresher_background_task_follows_dns_and_stops() -> None:
    dns = FakeDNS({"svc": ["10.0.0.1"]})
    changed = asyncio.Event()
    reports: list[list[str]] = []

    def on_change(urls: list[str]) -> None:
        reports.append(urls)
        changed.set()

    refresher = ReplicaRefresher(["http://svc:8000"], on_change, interval_s=0.01, resolver=dns)
    refresher.start()
    try:
        await asyncio.wait_for(changed.wait(), 2)
        changed.clear()
        dns.records["svc"] = ["10.0.0.1", "10.0.0.5"]
        await asyncio.wait_for(changed.wait(), 2)
    finally:
        await refresher.stop()
    lookups = len(dns.lookups)
    await asyncio.sleep(0.05)
    assert len(dns.lookups) == lookups, "resolver still called after stop()"
    assert reports == [["http://10.0.0.1:8000"], ["http://10.0.0.1:8000", "http://10.0.0.5:8000"]]


def test_refresher_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        ReplicaRefresher(["http://a"], lambda urls: None, interval_s=0)
