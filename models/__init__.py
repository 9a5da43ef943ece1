"""Pydantic types shared by every layer: the release plan, workflow inputs/results and status."""
