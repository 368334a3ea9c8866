"""Multi-sensor fusion: sensor readings attached to events by time (nearest or interpolated)."""
