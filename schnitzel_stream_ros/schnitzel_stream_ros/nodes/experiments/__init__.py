"""Plugins of upstream's backpressure-fairness benchmark (bench/backpressure_fairness.py)."""
