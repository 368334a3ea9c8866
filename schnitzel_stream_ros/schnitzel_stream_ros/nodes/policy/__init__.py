"""Event policy plugins: zones, dedup, the event builder (protocol v0.2) and the event router."""
