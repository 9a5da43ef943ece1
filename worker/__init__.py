"""The relman worker: hosts the release workflow and the AWS activities."""
