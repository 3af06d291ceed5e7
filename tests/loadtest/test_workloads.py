"""Request pools: synthetic prompts of the asked length and FIM share; benchmark prompts."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from codeserve.loadtest.protocol import WorkloadSpec
from codeserve.loadtest.workloads import build_workload


def test_synthetic_pool_has_lengths_fim_share_and_options() -> None:
    spec = WorkloadSpec(
        prompt_tokens=40,
        suffix_tokens=10,
        fim_fraction=0.25,
        n=3,
        max_tokens=7,
        ignore_eos=True,
        min_tokens=2,
        pool_size=400,
    )
    wl = build_workload(spec, "m", seed=3)
    bodies = [orjson.loads(r.body) for r in wl.pool]
    fim = [b for b in bodies if "suffix" in b]
    assert 70 <= len(fim) <= 130
    assert all(len(b["prompt"].split()) == 40 for b in bodies)
    assert all(len(b["suffix"].split()) == 10 for b in fim)
    first = bodies[0]
    assert (first["n"], first["max_tokens"], first["ignore_eos"], first["min_tokens"]) == (
        3,
        7,
        True,
        2,
    )
    assert first["stream"] and first["stream_options"] == {"include_usage": True}
    assert wl.pool == build_workload(spec, "m", seed=3).pool
    assert wl.pick(random.Random(0)) in wl.pool


def test_benchmark_pools_use_task_prompts_and_infill_suffixes(data_dir: Path) -> None:
    he = build_workload(WorkloadSpec(source="humaneval"), "m", seed=0, data_dir=data_dir)
    assert len(he.pool) == 164 and he.pool[0].task_id == "HumanEval/0"
    body = orjson.loads(he.pool[0].body)
    assert body["prompt"].startswith("from typing import List") and "suffix" not in body
    assert body["stop"]
    infill = build_workload(
        WorkloadSpec(source="humaneval-infill-random-light"), "m", seed=0, data_dir=data_dir
    )
    assert all(r.fim for r in infill.pool)
    assert "suffix" in orjson.loads(infill.pool[0].body)
    chat = build_workload(
        WorkloadSpec(source="mbpp", endpoint="chat"), "m", seed=0, data_dir=data_dir
    )
    assert orjson.loads(chat.pool[0].body)["messages"][0]["role"] == "user"
