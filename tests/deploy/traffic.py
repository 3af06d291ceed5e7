"""Client side of the multi-host test, run inside a lab namespace (`ip netns exec NS python -m
tests.deploy.traffic ...`) because the servers' addresses exist only there. Prints one JSON
object on stdout.

  wait URL [--timeout S]                       poll until URL answers 200
  complete BASE --model M [--requests N] [--concurrency C] [--stats URL ...]
                                               N completions; {"statuses": [...], "errors": [...],
                                               "received": {URL: requests each mock replica got}}
  get URL [--text]                             the JSON body of URL ({"text": ...} with --text)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

import httpx
import orjson


def _client(timeout: float) -> httpx.AsyncClient:
    # trust_env=False: a proxy from the environment must never see lab traffic.
    return httpx.AsyncClient(timeout=timeout, trust_env=False)


async def wait(url: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    last = "no answer"
    async with _client(2.0) as client:
        while time.monotonic() < deadline:
            try:
                resp = await client.get(url)
                if resp.status_code == 200:
                    return {"ok": True}
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.2)
    return {"ok": False, "last": last}


async def _received(client: httpx.AsyncClient, stats: list[str]) -> dict[str, int]:
    """Requests each mock replica has received so far (its /mock/stats)."""
    answers = await asyncio.gather(*(client.get(url) for url in stats))
    return {url: int(a.raise_for_status().json()["received"]) for url, a in zip(stats, answers)}


async def complete(
    base: str, model: str, requests: int, concurrency: int, stats: list[str]
) -> dict[str, object]:
    slots = asyncio.Semaphore(concurrency)
    body = {"model": model, "prompt": "def add(a, b):", "max_tokens": 8, "temperature": 0}

    async def one(client: httpx.AsyncClient) -> tuple[int, str]:
        async with slots:
            try:
                resp = await client.post(f"{base}/v1/completions", json=body)
            except httpx.HTTPError as exc:
                return 0, repr(exc)
            return resp.status_code, "" if resp.status_code == 200 else resp.text[:300]

    async with _client(30.0) as client:
        before = await _received(client, stats)
        results = await asyncio.gather(*(one(client) for _ in range(requests)))
        after = await _received(client, stats)
    return {
        "statuses": [s for s, _ in results],
        "errors": [e for _, e in results if e],
        "received": {url: after[url] - before[url] for url in stats},
    }


async def get(url: str, text: bool) -> object:
    async with _client(5.0) as client:
        resp = await client.get(url)
        resp.raise_for_status()
        return {"text": resp.text} if text else resp.json()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.traffic")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_wait = sub.add_parser("wait")
    p_wait.add_argument("url")
    p_wait.add_argument("--timeout", type=float, default=60.0)
    p_complete = sub.add_parser("complete")
    p_complete.add_argument("base")
    p_complete.add_argument("--model", required=True)
    p_complete.add_argument("--requests", type=int, default=20)
    p_complete.add_argument("--concurrency", type=int, default=8)
    p_complete.add_argument("--stats", action="append", default=[])
    p_get = sub.add_parser("get")
    p_get.add_argument("url")
    p_get.add_argument("--text", action="store_true")
    args = parser.parse_args(argv)

    if args.cmd == "wait":
        result: object = asyncio.run(wait(args.url, args.timeout))
    elif args.cmd == "complete":
        result = asyncio.run(
            complete(args.base, args.model, args.requests, args.concurrency, args.stats)
        )
    else:
        result = asyncio.run(get(args.url, args.text))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
