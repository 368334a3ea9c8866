"""Helpers for tests, benchmarks and the demo: DDS isolation and process hygiene.

Shipped with the package (like launch_testing) so bench/ scripts and downstream packages can
use the same isolation rules as our own tests.
"""
