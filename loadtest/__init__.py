"""Load tester (`codeserve loadtest`) and the mock OpenAI upstream
(`python -m codeserve.loadtest.mock_server`).

Modules: `arrivals` (open-loop schedules), `workloads` (request pools), `runner` (sending and
timing), `records` (per-candidate SSE timing), `metrics` (summary), `sweep` (runs and the SLO
rate search), `correctness` (pass rate of sampled candidates), `report` (table, JSON,
HTML with charts from `codeserve.common.charts`), `compare`, `protocol` (shapes); the command
itself is `codeserve.cli.loadtest`; `mock_*` for the mock upstream.
"""
