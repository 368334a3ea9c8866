"""Delivery plugins: the durable SQLite queue nodes and the HTTP sinks (upstream keys, plus more).

Thin wrappers around `schnitzel_stream_ros.delivery`: the guarantees live there and are tested
without a container; these classes only map graph parameters and counters.
"""
