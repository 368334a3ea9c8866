"""Importing this module is the failure: tests assert the allowlist refused it before import."""
raise RuntimeError('graph_test_canary was imported although it is outside the plugin allowlist')
