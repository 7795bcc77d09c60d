"""Hostile-input and isolation tests: fuzzed HTTP and WebSocket input, tenants, secrets."""
