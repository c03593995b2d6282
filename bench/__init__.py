"""Benchmarks that print figures (`python -m bench NAME`). They never fail on a time."""
