"""Windows and aggregates on event time: tumbling, sliding and session windows by key."""
