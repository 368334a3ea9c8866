"""Example plugins for schnitzel_stream_ros, packaged separately (see docs/plugins.md)."""
