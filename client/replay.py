"""A release's status read from its recorded history, with no worker: the CLI replays it.

A release's status lives in its workflow's state, which a worker rebuilds by replaying the
workflow's event history whenever it answers a Query about a release it does not hold in
memory. The CLI can do the same: it fetches the history, replays it through relman's own
workflow code in Temporal's ``Replayer`` (in the workflow sandbox, with the CLI's payload
keys), and asks the rebuilt workflow for its status directly. The status of an ended
release is complete (its whole timeline), with no worker running; what a release recorded
before the worker that ran it had a newer relman may fail to replay here (a ``patched()``
branch this relman does not know), and then the caller asks a worker instead.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import (
    ExecuteWorkflowInput,
    Interceptor,
    Replayer,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from models.status import ReleaseStatus
from workflows.release import ReleaseWorkflow


class ReplayFailed(Exception):
    """This relman cannot replay the release's history; the message says why."""


class _Keep(Interceptor):
    """Keeps the workflow object each replay builds, to read its state once replayed."""

    def __init__(self) -> None:
        self.instances: dict[str, Any] = {}

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        instances = self.instances

        class Inbound(WorkflowInboundInterceptor):
            async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
                instances[workflow.info().workflow_id] = workflow.instance()
                return await super().execute_workflow(input)

        return Inbound


async def replayed_status(client: Client, release_id: str) -> ReleaseStatus:
    """The status of release ``release_id``, from its latest run's history replayed here
    (with its whole timeline); :class:`ReplayFailed` if this relman cannot replay it."""
    from worker.sandbox import SANDBOX  # lazily: only this command needs the sandbox

    history = await client.get_workflow_handle(release_id).fetch_history()
    keep = _Keep()
    replayer = Replayer(
        workflows=[ReleaseWorkflow],
        workflow_runner=SANDBOX,
        data_converter=client.data_converter,
        namespace=client.namespace,
        interceptors=[keep],
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is not None:
        raise ReplayFailed(str(result.replay_failure).splitlines()[0][:500])
    instance = keep.instances.get(release_id)
    if instance is None:
        raise ReplayFailed("its history holds no run of the release workflow")
    # The object lives in the sandbox; its status crosses over as data.
    return ReleaseStatus.model_validate(instance.status().model_dump(mode="json"))
