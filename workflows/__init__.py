"""Temporal workflows: deterministic orchestration of releases (no I/O here)."""
