"""Upstream's backpressure-fairness experiment on this runtime: configs, runs, metrics (bench/)."""
