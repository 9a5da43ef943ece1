"""Activity failures reach the workflow as one line under Temporal's limits, whatever the
exception and however long its chain of causes."""

from __future__ import annotations

from datetime import timedelta

from botocore.exceptions import ClientError, EndpointConnectionError
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from worker.failures import MESSAGE_LIMIT, CompactFailures

TRACE = "x" * 200_000  # what a full botocore traceback chain can amount to


@activity.defn
async def fails(how: str) -> None:
    if how == "aws":
        try:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1/" + TRACE)
        except EndpointConnectionError:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                "DescribeAlarms",
            ) from None
    if how == "long":
        raise ApplicationError("batch failed: " + TRACE, {"target": "t"}, type="TargetsFailed")
    raise RuntimeError("boom")


@workflow.defn(sandboxed=False)
class Fails:
    @workflow.run
    async def run(self, how: str) -> list[str | bool]:
        try:
            await workflow.execute_activity(
                fails,
                how,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError as err:
            cause = err.cause
            assert isinstance(cause, ApplicationError)
            return [cause.type or "", cause.message, cause.non_retryable]
        return []


async def test_activity_failures_are_one_short_line(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    client = time_skipping_env.client
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[Fails],
        activities=[fails],
        interceptors=[CompactFailures()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):

        async def outcome(how: str) -> list[str | bool]:
            return await client.execute_workflow(
                Fails.run, how, id=f"fails-{how}-{task_queue}", task_queue=task_queue
            )

        # An AWS error: its operation and code, not the chain of causes behind it.
        assert await outcome("aws") == [
            "ClientError", "DescribeAlarms: ThrottlingException: Rate exceeded", False
        ]  # fmt: skip
        assert await outcome("other") == ["RuntimeError", "RuntimeError: boom", False]
        kind, message, final = await outcome("long")
        assert (kind, final) == ("TargetsFailed", False)
        assert isinstance(message, str) and len(message) == MESSAGE_LIMIT
        assert message.startswith("batch failed: xxx") and message.endswith(
            f"… (cut from {len('batch failed: ' + TRACE)} characters; the worker's log has "
            "all of it)"
        )
