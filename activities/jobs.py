"""Job steps: run an ECS task, a Lambda function or an SSM command once, and wait for it.

One activity, :meth:`JobActivities.run_job`, runs a job of any kind and heartbeats while it
waits. A job starts at most once per ``JobInput.key`` (one attempt of one job of one wave),
so a worker that dies mid-job and the retry that follows never start a second migration:

- ``ecs_task``: RunTask carries ``startedBy`` (a hash of the key) and a client token; a
  retry first lists the cluster's tasks started by it and waits for the one it finds;
- ``ssm_command``: the key is the command's comment (:mod:`activities.ssm_commands`);
- ``lambda_job``: a synchronous invoke cannot be looked up afterwards, so the activity
  heartbeats that it is invoking before it does; a retry that finds that heartbeat fails
  (``JobOutcomeUnknown``) for an operator rather than invoking again.

A job that ran and failed (a non-zero exit code, a function error, a failed assertion, an
invocation not ``Success``) returns ``JobResult(succeeded=False)`` with what happened; one
interrupted mid-way (an SSM invocation ``TimedOut``, ``Cancelled`` or ``Terminated``, an
essential ECS container stopped without an exit code) also says ``outcome_unknown``. AWS
errors retrying cannot fix raise non-retryable errors naming the resource; those raised
before anything can have started the job (AWS refused to start it, in the first attempt
or after a lookup found nothing started) have the type ``JobNotStarted``: every other
error leaves the job's outcome unknown to the workflow, which treats it as applied.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ssm_commands
from activities.aws import AwsClients, acting_for
from activities.errors import aws_call, classified
from models.jobs import (
    JOB_NOT_STARTED,
    RUN_JOB,
    EcsTaskSpec,
    JobInput,
    JobResult,
    LambdaJobSpec,
    SsmCommandSpec,
)

# ECS's startedBy holds at most 36 characters; a client token at most 64.
STARTED_BY_PREFIX = "relman-"
STARTED_BY_LIMIT = 36
CLIENT_TOKEN_LIMIT = 64
# Synchronous invokes under way at once (each heartbeats from the activity's thread).
INVOKE_THREADS = 16
HEARTBEAT_EVERY = 2.0
R = TypeVar("R")
# Output excerpts kept in a job's result (and so in the release's history).
EXCERPT = 300
# SSM invocation statuses of a command stopped part-way: what it did is unknown.
INTERRUPTED = frozenset({"TimedOut", "Cancelled", "Terminated"})
# ECS's stopCode of a task whose containers never started.
FAILED_TO_START = "TaskFailedToStart"


class JobOutcomeUnknown(Exception):
    """A job may have run in an earlier attempt whose result was lost: not started again."""


class NoInstances(Exception):
    """An ssm_command's tags choose no running instance."""


def first_attempt() -> bool:
    """True in the first attempt of a job's activity: no earlier one can have started it."""
    return activity.info().attempt == 1


@contextmanager
def refusals_mean_not_started(known: bool) -> Iterator[None]:
    """When ``known`` (nothing was started for this key before), a final error raised here
    (AWS refused the call) means the job never started: retyped ``JobNotStarted``."""
    try:
        yield
    except ApplicationError as err:
        if not known or not err.non_retryable or err.type == JOB_NOT_STARTED:
            raise
        raise ApplicationError(err.message, type=JOB_NOT_STARTED, non_retryable=True) from err


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def started_by(key: str) -> str:
    """The ``startedBy`` of the ECS task run for ``key``."""
    return (STARTED_BY_PREFIX + _digest(key))[:STARTED_BY_LIMIT]


def log_link(region: str, group: str, stream: str) -> str:
    """The CloudWatch console's page of one log stream."""

    def enc(text: str) -> str:
        # The console's own double encoding of its hash route ('/' -> $252F).
        return quote(quote(text, safe=""), safe="").replace("%", "$")

    return (
        f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{enc(group)}/log-events/{enc(stream)}"
    )


def check_result(payload: Any, path: str | None, expect: Any) -> str | None:
    """Why ``payload`` fails the JSONPath assertion (``path`` matches ``expect``, or
    something truthy when ``expect`` is None); None when it holds or there is none."""
    if path is None:
        return None
    from jsonpath_ng.ext import parse

    found = [m.value for m in parse(path).find(payload)]
    if not found:
        return f"{path} matches nothing in the result"
    if expect is None:
        return None if any(found) else f"{path} is {found[0]!r}"
    if expect in found:
        return None
    return f"{path} is {found[0]!r}, expected {expect!r}"


class JobActivities:
    """Run job steps; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients, pause: Callable[[float], None] | None = None):
        self.aws = aws
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=INVOKE_THREADS, thread_name_prefix="relman-job"
        )
        # Waits between polls; returns early when the activity is cancelled.
        self._pause = pause or (lambda seconds: activity.wait_for_cancelled_sync(seconds))

    @activity.defn(name=RUN_JOB)
    def run_job(self, input: JobInput) -> JobResult:
        """Start ``input.job`` unless this key started it already, and wait for its end."""
        job = input.job
        with acting_for(input.release_id, input.application), classified(job.resource):
            if isinstance(job, EcsTaskSpec):
                result = self._ecs_task(job, input)
            elif isinstance(job, LambdaJobSpec):
                result = self._lambda_job(job, input)
            else:
                result = self._ssm_command(job, input)
        activity.logger.info("job %s: %s", job.name, result.summary)
        return result

    def _client(self, service: str, job: EcsTaskSpec | LambdaJobSpec | SsmCommandSpec) -> Any:
        return self.aws.client(service, job.region, job.role_arn, job.external_id)

    def _beat(self, details: dict[str, str]) -> None:
        activity.heartbeat(details)

    # --- ecs_task ---------------------------------------------------------------------------

    def _ecs_task(self, job: EcsTaskSpec, input: JobInput) -> JobResult:
        ecs = self._client("ecs", job)
        tag = started_by(input.key)
        with refusals_mean_not_started(first_attempt()), aws_call("ListTasks", job.resource):
            arns = [
                arn
                for status in ("RUNNING", "STOPPED")
                for arn in ecs.list_tasks(cluster=job.cluster, startedBy=tag, desiredStatus=status)[
                    "taskArns"
                ]
            ]
        if arns:
            task_arn = arns[0]
            activity.logger.info(
                "job %s: task %s started by an earlier attempt", job.name, task_arn
            )
        else:
            with refusals_mean_not_started(True):  # no task was started for this key
                task_arn = self._run_task(ecs, job, input.key, tag)
        self._beat({"task_arn": task_arn})
        while True:
            with aws_call("DescribeTasks", job.resource):
                task = ecs.describe_tasks(cluster=job.cluster, tasks=[task_arn])["tasks"][0]
            if task.get("lastStatus") == "STOPPED":
                break
            self._beat({"task_arn": task_arn})
            self._pause(input.poll_seconds)
        return self._task_result(ecs, job, task)

    def _run_task(self, ecs: Any, job: EcsTaskSpec, key: str, tag: str) -> str:
        request: dict[str, Any] = {
            "cluster": job.cluster,
            "taskDefinition": job.task_definition,
            "launchType": job.launch_type,
            "count": 1,
            "startedBy": tag,
            "clientToken": _digest(key)[:CLIENT_TOKEN_LIMIT],
            "tags": [{"key": "relman:job", "value": key[:256]}],
        }
        if job.network is not None:
            request["networkConfiguration"] = {
                "awsvpcConfiguration": {
                    "subnets": job.network.subnets,
                    "securityGroups": job.network.security_groups,
                    "assignPublicIp": "ENABLED" if job.network.assign_public_ip else "DISABLED",
                }
            }
        if job.container:
            override: dict[str, Any] = {"name": job.container}
            if job.command is not None:
                override["command"] = job.command
            if job.environment:
                override["environment"] = [
                    {"name": k, "value": v} for k, v in sorted(job.environment.items())
                ]
            request["overrides"] = {"containerOverrides": [override]}
        with aws_call("RunTask", job.resource):
            answer = ecs.run_task(**request)
        if not answer.get("tasks"):
            reasons = "; ".join(
                f"{f.get('arn', '')}: {f.get('reason', '')}" for f in answer.get("failures", [])
            )
            return _fail_start(job, reasons or "no task started")
        return str(answer["tasks"][0]["taskArn"])

    def _task_result(self, ecs: Any, job: EcsTaskSpec, task: dict[str, Any]) -> JobResult:
        with aws_call("DescribeTaskDefinition", job.resource):
            definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])[
                "taskDefinition"
            ]
        containers = {c["name"]: c for c in definition.get("containerDefinitions", [])}
        codes: dict[str, int | None] = {c["name"]: c.get("exitCode") for c in task["containers"]}
        essential = [n for n in codes if containers.get(n, {}).get("essential", True)]
        succeeded = bool(essential) and all(codes[n] == 0 for n in essential)
        # A container stopped without an exit code (the task was stopped, its host lost)
        # was interrupted, unless the task never started its containers.
        interrupted = task.get("stopCode") != FAILED_TO_START and any(
            codes[n] is None for n in essential
        )
        task_arn = task["taskArn"]
        details = {
            "task_arn": task_arn,
            "exit_codes": ", ".join(f"{n}={codes[n]}" for n in sorted(codes)),
            "stopped_reason": str(task.get("stoppedReason", "")),
        }
        region = task_arn.split(":")[3]
        for name in essential:
            logs = containers.get(name, {}).get("logConfiguration") or {}
            options = logs.get("options") or {}
            if logs.get("logDriver") == "awslogs" and "awslogs-stream-prefix" in options:
                stream = f"{options['awslogs-stream-prefix']}/{name}/{task_arn.rsplit('/', 1)[-1]}"
                details["log"] = log_link(
                    options.get("awslogs-region", region), options["awslogs-group"], stream
                )
                break
        reason = details["stopped_reason"] or "no reason given"
        summary = f"task {task_arn} stopped ({reason}); exit codes {details['exit_codes']}"
        return JobResult(
            succeeded=succeeded,
            outcome_unknown=not succeeded and interrupted,
            reference=task_arn,
            summary=summary,
            details=details,
        )

    # --- lambda_job -------------------------------------------------------------------------

    def _lambda_job(self, job: LambdaJobSpec, input: JobInput) -> JobResult:
        if input.check:
            return self._completion(job)
        earlier = activity.info().heartbeat_details
        if earlier and isinstance(earlier[0], dict) and earlier[0].get("invoking") == input.key:
            raise ApplicationError(
                f"{job.resource} was invoked by an earlier attempt whose result was lost; "
                "not invoking it again (check its logs, then retry the wave or skip it)",
                type=JobOutcomeUnknown.__name__,
                non_retryable=True,
            )
        client = self._client("lambda", job)
        request: dict[str, Any] = {
            "FunctionName": job.function,
            "InvocationType": "Event" if job.invocation == "async" else "RequestResponse",
            "Payload": json.dumps(job.payload).encode(),
        }
        if job.qualifier:
            request["Qualifier"] = job.qualifier
        beat = {"invoking": input.key}
        self._beat(beat)
        with refusals_mean_not_started(first_attempt()), aws_call("Invoke", job.resource):
            # Heartbeat while the function runs (up to 15 minutes).
            answer = self._heartbeating(lambda: _invoked(client, request), beat)
        raw = bytes(answer["Payload"])
        request_id = str(answer.get("ResponseMetadata", {}).get("RequestId", ""))
        if job.invocation == "async":
            # Lambda queued the event (202); the workflow checks for its completion.
            return JobResult(
                succeeded=True,
                done=False,
                reference=request_id,
                summary=f"{job.resource} invoked asynchronously (request {request_id})",
                details={"request_id": request_id},
            )
        text = raw.decode(errors="replace")
        details = {"request_id": request_id, "result": text[:EXCERPT]}
        if answer.get("FunctionError"):
            details["function_error"] = str(answer["FunctionError"])
            return JobResult(
                succeeded=False,
                reference=request_id,
                summary=f"{job.resource} failed ({answer['FunctionError']}): {text[:EXCERPT]}",
                details=details,
            )
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = text
        problem = check_result(payload, job.assert_path, job.expect)
        if problem:
            return JobResult(
                succeeded=False,
                reference=request_id,
                summary=f"{job.resource} returned a result that fails its assertion: {problem}",
                details=details,
            )
        return JobResult(
            succeeded=True,
            reference=request_id,
            summary=f"{job.resource} returned {text[:EXCERPT]}",
            details=details,
        )

    def _completion(self, job: LambdaJobSpec) -> JobResult:
        """Ask an asynchronous job's completion function whether the job has finished."""
        check = job.completion
        assert check is not None  # the plan makes sure
        client = self._client("lambda", job)
        request: dict[str, Any] = {
            "FunctionName": check.function,
            "InvocationType": "RequestResponse",
            "Payload": json.dumps(check.payload).encode(),
        }
        if check.qualifier:
            request["Qualifier"] = check.qualifier
        resource = f"lambda function {check.function}"
        with aws_call("Invoke", resource):
            answer = self._heartbeating(lambda: _invoked(client, request), {"checking": resource})
        text = bytes(answer["Payload"]).decode(errors="replace")
        details = {"result": text[:EXCERPT]}
        if answer.get("FunctionError"):
            # A check that fails says nothing about the job: the next interval asks again.
            return JobResult(
                succeeded=False,
                done=False,
                summary=f"completion check {resource} failed ({answer['FunctionError']})",
                details=details,
            )
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        if check.failed_path and check_result(payload, check.failed_path, None) is None:
            return JobResult(
                succeeded=False,
                summary=f"{job.resource} failed: its completion check returned {text[:EXCERPT]}",
                details=details,
            )
        if check_result(payload, check.done_path, None) is not None:
            return JobResult(
                succeeded=False,
                done=False,
                summary=f"{job.resource} still running",
                details=details,
            )
        problem = check_result(payload, job.assert_path, job.expect)
        if problem:
            return JobResult(
                succeeded=False,
                summary=f"{job.resource} finished with a result failing its assertion: {problem}",
                details=details,
            )
        return JobResult(
            succeeded=True, summary=f"{job.resource} finished: {text[:EXCERPT]}", details=details
        )

    # --- ssm_command ------------------------------------------------------------------------

    def _ssm_command(self, job: SsmCommandSpec, input: JobInput) -> JobResult:
        ssm = self._client("ssm", job)
        first = first_attempt()
        with refusals_mean_not_started(first), aws_call("DescribeInstances", job.resource):
            instances = ssm_commands.resolve_instances(self._client("ec2", job), job.instance_tags)
        if not instances:
            raise ApplicationError(
                f"{job.resource}: no running instance carries these tags"
                + ("" if first else " (now; an earlier attempt may have run the command)"),
                type=JOB_NOT_STARTED if first else NoInstances.__name__,
                non_retryable=True,
            )
        with refusals_mean_not_started(first), aws_call("SendCommand", job.resource):
            sent = ssm_commands.send_command_once(
                ssm,
                key=input.key,
                document=job.document,
                document_version=job.document_version,
                instance_ids=instances,
                parameters=job.parameters,
                timeout_seconds=int(job.timeout.total_seconds()),
            )
        beat = {"command_id": sent.command_id}
        with aws_call("GetCommandInvocation", job.resource):
            outcome = ssm_commands.wait_for_invocations(
                ssm,
                sent.command_id,
                sent.instance_ids,
                heartbeat=lambda: self._beat(beat),
                poll_seconds=input.poll_seconds,
                deadline=time.monotonic() + job.timeout.total_seconds(),
                pause=self._pause,
            )
        statuses = ", ".join(f"{i.instance_id}={i.status}" for i in outcome.invocations)
        details = {"command_id": sent.command_id, "invocations": statuses}
        for failed in outcome.failed[:3]:
            details[f"{failed.instance_id} output"] = (failed.stderr or failed.stdout)[-EXCERPT:]
        return JobResult(
            succeeded=outcome.succeeded,
            outcome_unknown=any(i.status in INTERRUPTED for i in outcome.invocations),
            reference=sent.command_id,
            summary=f"command {sent.command_id} on {len(outcome.invocations)} instance(s): "
            + statuses,
            details=details,
        )

    def _heartbeating(self, work: Callable[[], R], details: dict[str, str]) -> R:
        future = self._pool.submit(contextvars.copy_context().run, work)
        with activity.shield_thread_cancel_exception():
            while not concurrent.futures.wait([future], timeout=HEARTBEAT_EVERY).done:
                self._beat(details)
        return future.result()

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.run_job]


def _invoked(client: Any, request: dict[str, Any]) -> dict[str, Any]:
    answer = dict(client.invoke(**request))
    answer["Payload"] = answer["Payload"].read()  # read in the thread: it may stream
    return answer


def _fail_start(job: EcsTaskSpec, reasons: str) -> str:
    raise ApplicationError(
        f"{job.resource}: RunTask started no task: {reasons}",
        type=JOB_NOT_STARTED,
        non_retryable=True,
    )
