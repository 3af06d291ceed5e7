"""Correctness under load: score the candidates kept for scoring with the eval harness's
sandboxed scorer, so a pass rate can be read beside the latency figures."""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.protocol import RequestRecord
from loadtest.workloads import Workload
from server.errors import CliError


async def score_sample(records: Sequence[RequestRecord], workload: Workload) -> tuple[int, float | None]:
    """(candidates scored, pass rate) over the measured requests that kept their texts."""
    if workload.benchmark is None:
        raise CliError("--score-fraction needs benchmark prompts (--workload humaneval, mbpp, ...)")
    raise CliError("--score-fraction: the sandbox scorer (client.scoring) is not available yet")
