"""One module per benchmark; each ``run(stack, settings)`` returns its runs and table rows."""
