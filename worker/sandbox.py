"""The workflow sandbox relman's workflows run in, on workers and when the CLI replays a
release's history (``client.replay``)."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from models.signing import SANDBOX_PASSTHROUGH

# The workflow sandbox checks the workflow code; signature verification's native crypto
# library cannot be loaded twice, so it passes through (models.signing).
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
)
