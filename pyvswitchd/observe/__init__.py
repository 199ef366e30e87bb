"""Observability: coverage counters, logging and statistics."""
