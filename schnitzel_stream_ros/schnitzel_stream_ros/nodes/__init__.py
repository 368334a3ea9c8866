"""Plugins by family: core/ (dev, file and sampling primitives), sources, compute, policy, sinks...

Each plugin is registered under its upstream class name in the `schnitzel_stream_ros.plugins`
entry-point group (setup.py), which is how graph files and the upstream alias table find it.
"""
