"""Durable delivery: the SQLite queue, the forwarder to the HTTP backend, and the reference backend.

Everything here is plain Python (no ROS): the queue nodes in `schnitzel_stream_ros.nodes.delivery`
are thin wrappers, so the delivery guarantees can be tested, benchmarked and soaked without a
container. See docs/delivery.md for where "accepted" begins and what at-least-once means here.
"""
