"""`codeserve bakeoff`: which small code model to deploy, by pass@k and sampling speed together.

plan.py      who is compared (endpoints, models, prompt formats) and the eval runs that needs
run.py       runs them through `codeserve.client.eval_run` (resumable run folders), in rounds
metrics.py   pass@k, candidates/s, TTFT, time for k candidates, solved tasks per minute, Pareto
evidence.py  why greedy candidates failed (syntax error, empty, cut at max_tokens...)
published.py published pass@1 with sources, and the gap flag
results.py   the shape of bakeoff.json
report.py    console table, leaderboard.md, report.html
compare.py   `codeserve bakeoff compare A B`
"""
