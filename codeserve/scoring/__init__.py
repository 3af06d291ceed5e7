"""Benchmarks as the scorer sees them: prompt formats, programs, sanitizing, pass@k, the Scorer."""
