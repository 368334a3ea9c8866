"""Observability: run metrics (per node, per edge, latency) and the run report."""
