"""The eval harness (`codeserve.client`): sample n candidates per task from any OpenAI-compatible
endpoint, score them through `codeserve.scoring`, and report pass@k beside latency and throughput."""
