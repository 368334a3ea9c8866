"""Node state that survives: the checkpoint file (store.py) and bounded keyed state (bounded.py)."""
