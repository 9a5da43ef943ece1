"""One module per command group; each parses arguments and renders a result."""
