"""The relman command line and its Temporal client."""
