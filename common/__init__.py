"""What the CLI, the worker and the workflows share: the Temporal connection and task queue,
search attribute keys, error types, OpenTelemetry set-up and relman's metrics."""
