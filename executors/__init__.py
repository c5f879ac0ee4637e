"""Executors: how one plan item becomes a running, verified service on its target."""
