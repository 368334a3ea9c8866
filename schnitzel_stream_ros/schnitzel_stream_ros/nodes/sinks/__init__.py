"""Sinks towards robots and viewers: typed Event topics (+ legacy JSON) and annotated images."""
