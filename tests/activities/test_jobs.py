"""Job steps against a moto server over HTTP: an ECS task, a Lambda function and an SSM
command each run once per key, and their outcome is read back as a user sees it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import json
import time
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.aws import AwsClients
from activities.jobs import JobActivities, check_result, started_by
from bench.fixtures import lambda_without_docker
from models.jobs import (
    JOB_NOT_STARTED,
    EcsTaskSpec,
    JobInput,
    LambdaJobSpec,
    SsmCommandSpec,
    WaveJob,
)
from tests.activities.test_ssm_commands import launch
from tests.reliability.aws_proxy import Answer, AwsProxy, Call, aws_error

CLUSTER = "jobs"
KEY = "rel-1.db.1:migrate"


class WorkerDied(Exception):
    """Stands for a worker killed while it waits for a job."""


def ecs_job(aws: Any, **fields: Any) -> EcsTaskSpec:
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    ecs.register_task_definition(
        family="migrate",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": "migrator:2",
                "essential": True,
                # moto sums container-level sizes even on Fargate.
                "cpu": 256,
                "memory": 512,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/migrate",
                        "awslogs-region": "us-east-1",
                        "awslogs-stream-prefix": "job",
                    },
                },
            }
        ],
    )
    subnet = aws.client("ec2").describe_subnets()["Subnets"][0]["SubnetId"]
    return EcsTaskSpec.model_validate(
        {
            "name": "migrate",
            "kind": "ecs_task",
            "cluster": CLUSTER,
            "task_definition": "migrate:1",
            "network": {"subnets": [subnet]},
            "container": "app",
            "command": ["migrate", "up"],
            "environment": {"TARGET_VERSION": "42"},
            **fields,
        }
    )


def tasks_started(aws: Any) -> list[str]:
    ecs = aws.client("ecs")
    return [
        arn
        for status in ("RUNNING", "STOPPED")
        for arn in ecs.list_tasks(cluster=CLUSTER, desiredStatus=status)["taskArns"]
    ]


def stop_when_started(aws: Any, reason: str = "Essential container exited") -> str:
    """Wait for the job's task to appear, then stop it as ECS would when it exits."""
    for _ in range(200):
        arns = aws.client("ecs").list_tasks(cluster=CLUSTER, startedBy=started_by(KEY))["taskArns"]
        if arns:
            aws.client("ecs").stop_task(cluster=CLUSTER, task=arns[0], reason=reason)
            return str(arns[0])
        time.sleep(0.02)
    raise AssertionError("no task started")


def test_an_ecs_task_runs_once_and_reports_exit_codes_and_its_log(aws: Any) -> None:
    job = ecs_job(aws)
    jobs = JobActivities(aws, pause=lambda s: time.sleep(0.02))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            ActivityEnvironment().run,
            jobs.run_job,
            JobInput(release_id="rel-1", wave="db", job=job, key=KEY, poll_seconds=0.02),
        )
        task_arn = stop_when_started(aws)
        result = running.result(timeout=30)

    assert result.succeeded
    assert result.reference == task_arn
    assert result.details["exit_codes"] == "app=0"
    assert result.details["stopped_reason"] == "Essential container exited"
    assert result.details["log"].startswith("https://us-east-1.console.aws.amazon.com/cloudwatch/")
    task = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
    assert task["overrides"]["containerOverrides"][0]["command"] == ["migrate", "up"]
    assert tasks_started(aws) == [task_arn]


def test_a_retry_after_a_worker_died_mid_task_waits_for_the_same_task(aws: Any) -> None:
    job = ecs_job(aws)
    job_input = JobInput(release_id="rel-1", wave="db", job=job, key=KEY, poll_seconds=0.02)

    def die(seconds: float) -> None:
        raise WorkerDied

    with pytest.raises(WorkerDied):
        ActivityEnvironment().run(JobActivities(aws, pause=die).run_job, job_input)
    [first] = tasks_started(aws)

    jobs = JobActivities(aws, pause=lambda s: time.sleep(0.02))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(ActivityEnvironment().run, jobs.run_job, job_input)
        stop_when_started(aws)
        result = running.result(timeout=30)

    assert result.succeeded and result.reference == first
    assert tasks_started(aws) == [first]  # no second migration


def lambda_job(aws: Any, moto_endpoint: str, **fields: Any) -> LambdaJobSpec:
    lambda_without_docker(moto_endpoint)
    role = aws.client("iam").create_role(
        RoleName="backfill", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    aws.client("lambda").create_function(
        FunctionName="backfill",
        Runtime="python3.12",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return LambdaJobSpec.model_validate(
        {"name": "backfill", "kind": "lambda_job", "function": "backfill", **fields}
    )


def test_a_lambda_job_succeeds_when_its_result_passes_the_assertion(
    aws: Any, moto_endpoint: str
) -> None:
    job = lambda_job(
        aws,
        moto_endpoint,
        payload={"status": "done", "rows": 12},
        assert_path="$.status",
        expect="done",
    )
    result = ActivityEnvironment().run(
        JobActivities(aws).run_job, JobInput(release_id="r", wave="w", job=job, key="k")
    )
    assert result.succeeded, result.summary
    assert json.loads(result.details["result"]) == {"status": "done", "rows": 12}


def test_a_lambda_job_fails_when_its_result_fails_the_assertion(
    aws: Any, moto_endpoint: str
) -> None:
    job = lambda_job(
        aws, moto_endpoint, payload={"status": "partial"}, assert_path="$.status", expect="done"
    )
    result = ActivityEnvironment().run(
        JobActivities(aws).run_job, JobInput(release_id="r", wave="w", job=job, key="k")
    )
    assert not result.succeeded
    assert result.summary == (
        "lambda function backfill returned a result that fails its assertion: "
        "$.status is 'partial', expected 'done'"
    )


def test_jsonpath_assertions() -> None:
    assert check_result({"a": [{"ok": True}]}, "$.a[0].ok", None) is None
    assert check_result({"a": 1}, "$.b", None) == "$.b matches nothing in the result"
    assert check_result({"n": 0}, "$.n", None) == "$.n is 0"


def test_an_ssm_command_runs_on_the_tagged_instances_once(aws: Any) -> None:
    ids = launch(aws, 2, {"app": "payments", "role": "db-host"})
    launch(aws, 1, {"app": "payments", "role": "web"})
    job = SsmCommandSpec.model_validate(
        {
            "name": "warm-cache",
            "kind": "ssm_command",
            "document": "AWS-RunShellScript",
            "parameters": {"commands": ["warm-cache"]},
            "instance_tags": {"app": "payments", "role": "db-host"},
        }
    )
    job_input = JobInput(release_id="r", wave="w", job=job, key=KEY, poll_seconds=0)
    first = ActivityEnvironment().run(JobActivities(aws).run_job, job_input)
    again = ActivityEnvironment().run(JobActivities(aws).run_job, job_input)

    assert first.succeeded and again.reference == first.reference
    assert first.details["invocations"] == ", ".join(f"{i}=Success" for i in ids)
    commands = aws.client("ssm").list_commands()["Commands"]
    # (moto lists every instance it knows in InstanceIds; invocations above are per instance)
    assert [c["DocumentName"] for c in commands] == ["AWS-RunShellScript"]


def test_bad_job_sections_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="DB_PASSWORD looks like a secret"):
        EcsTaskSpec.model_validate(
            {
                "name": "m",
                "kind": "ecs_task",
                "cluster": "c",
                "task_definition": "t:1",
                "network": {"subnets": ["s"]},
                "container": "app",
                "environment": {"DB_PASSWORD": "hunter2"},
            }
        )
    with pytest.raises(ValueError, match="a FARGATE task needs network"):
        EcsTaskSpec.model_validate(
            {"name": "m", "kind": "ecs_task", "cluster": "c", "task_definition": "t:1"}
        )
    with pytest.raises(ValueError, match="compensation needs a name of its own"):
        WaveJob.model_validate(
            {
                "at": "before",
                "run": {"name": "x", "kind": "lambda_job", "function": "f"},
                "compensation": {"name": "x", "kind": "lambda_job", "function": "g"},
            }
        )


def test_preflight_names_each_missing_task_definition_function_and_document(aws: Any) -> None:
    from activities.preflight import PreflightActivities
    from models.preflight import preflight_input
    from tests.helpers import make_plan, seed, ssm, wave

    seed(aws, {"/p": "1"})
    plan = make_plan(
        [ssm("p", "/p", "2")],
        [
            wave(
                "db",
                ["p"],
                jobs=[
                    {
                        "at": "before",
                        "run": {
                            "name": "migrate",
                            "kind": "ecs_task",
                            "cluster": "c",
                            "task_definition": "nope:1",
                            "network": {"subnets": ["s"]},
                        },
                        "compensation": {"name": "down", "kind": "lambda_job", "function": "gone"},
                    },
                    {
                        "at": "after",
                        "run": {
                            "name": "warm",
                            "kind": "ssm_command",
                            "document": "Missing-Doc",
                            "instance_tags": {"a": "b"},
                        },
                        "compensation": "none",
                    },
                ],
            )
        ],
    )
    result = ActivityEnvironment().run(PreflightActivities(aws).preflight, preflight_input(plan))
    assert [(p.path, p.message) for p in result.problems] == [
        ("waves[0].jobs[0].run", "task definition 'nope:1' does not exist in us-east-1"),
        ("waves[0].jobs[0].compensation", "Lambda function 'gone' does not exist in us-east-1"),
        ("waves[0].jobs[1].run", "SSM document 'Missing-Doc' does not exist in us-east-1"),
    ]


def ec2_job(aws: Any, memory: int = 512) -> EcsTaskSpec:
    """An EC2-launched task definition (bridge network) on a cluster with one container
    instance (an EC2 instance registered with ECS)."""
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    (instance,) = launch(aws, 1, {"ecs-cluster": CLUSTER})
    ecs.register_container_instance(
        cluster=CLUSTER, instanceIdentityDocument=json.dumps({"instanceId": instance})
    )
    ecs.register_task_definition(
        family="migrate-ec2",
        networkMode="bridge",
        requiresCompatibilities=["EC2"],
        containerDefinitions=[
            {"name": "app", "image": "migrator:2", "essential": True, "memory": memory}
        ],
    )
    return EcsTaskSpec.model_validate(
        {
            "name": "migrate",
            "kind": "ecs_task",
            "cluster": CLUSTER,
            "task_definition": "migrate-ec2:1",
            "launch_type": "EC2",  # no network: the task uses its instance's
            "container": "app",
            "command": ["migrate", "up"],
        }
    )


def test_an_ecs_task_on_ec2_runs_on_a_container_instance_of_its_cluster(aws: Any) -> None:
    job = ec2_job(aws)
    jobs = JobActivities(aws, pause=lambda s: time.sleep(0.02))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            ActivityEnvironment().run,
            jobs.run_job,
            JobInput(release_id="rel-1", wave="db", job=job, key=KEY, poll_seconds=0.02),
        )
        task_arn = stop_when_started(aws)
        result = running.result(timeout=30)

    assert result.succeeded, result.summary
    assert result.summary == (
        f"task {task_arn} stopped (Essential container exited); exit codes app=0"
    )
    task = aws.client("ecs").describe_tasks(cluster=CLUSTER, tasks=[task_arn])["tasks"][0]
    assert task["launchType"] == "EC2"
    [instance_arn] = aws.client("ecs").list_container_instances(cluster=CLUSTER)[
        "containerInstanceArns"
    ]
    assert task["containerInstanceArn"] == instance_arn
    assert task["overrides"]["containerOverrides"][0]["command"] == ["migrate", "up"]
    assert tasks_started(aws) == [task_arn]


def test_an_ecs_task_on_ec2_that_finds_no_room_is_a_job_that_never_started(aws: Any) -> None:
    job = ec2_job(aws, memory=10_000_000)  # more than any instance has
    with pytest.raises(ApplicationError) as raised:
        ActivityEnvironment().run(
            JobActivities(aws).run_job,
            JobInput(release_id="rel-1", wave="db", job=job, key=KEY, poll_seconds=0.02),
        )
    # The workflow reads this type as "failed, nothing to undo" (any other: outcome unknown).
    assert raised.value.type == JOB_NOT_STARTED and raised.value.non_retryable
    assert raised.value.message == (
        f"ecs task migrate-ec2:1 on cluster {CLUSTER}: RunTask started no task: no task started"
    )
    assert tasks_started(aws) == []


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[AwsProxy]:
    """The fault-injecting proxy in front of moto (``tests.reliability.aws_proxy``)."""
    proxy = AwsProxy(urlsplit(moto_endpoint).port or 0)
    proxy.start()
    yield proxy
    proxy.stop()


def through(proxy: AwsProxy) -> AwsClients:
    return AwsClients(endpoint_url=proxy.endpoint, default_region="us-east-1", max_attempts=2)


def test_an_ssm_command_interrupted_on_an_instance_has_an_unknown_outcome(
    aws: Any, proxy: AwsProxy
) -> None:
    launch(aws, 1, {"role": "db-host"})

    def timed_out(call: Call, answer: Answer) -> Answer:
        status, headers, body = answer
        data = json.loads(body) | {"Status": "TimedOut", "StatusDetails": "ExecutionTimedOut"}
        return status, headers, json.dumps(data).encode()

    proxy.rewrite(lambda call: call.operation == "GetCommandInvocation", timed_out)
    job = SsmCommandSpec.model_validate(
        {
            "name": "migrate",
            "kind": "ssm_command",
            "document": "AWS-RunShellScript",
            "parameters": {"commands": ["migrate up"]},
            "instance_tags": {"role": "db-host"},
        }
    )
    result = ActivityEnvironment().run(
        JobActivities(through(proxy)).run_job,
        JobInput(release_id="r", wave="w", job=job, key=KEY, poll_seconds=0),
    )
    # It ran part-way, or all of it: not a plain failure.
    assert (result.succeeded, result.outcome_unknown) == (False, True)
    assert result.details["invocations"].endswith("=TimedOut")


def test_a_refused_invoke_never_started_the_job_only_in_its_first_attempt(
    aws: Any, moto_endpoint: str, proxy: AwsProxy
) -> None:
    job = lambda_job(aws, moto_endpoint)
    denied = "User is not authorized to perform: lambda:InvokeFunction"
    proxy.rewrite(
        lambda call: call.path.startswith("/2015-03-31/functions/backfill/invocations"),
        lambda call, answer: aws_error(call, "AccessDeniedException", denied, status=403),
    )
    job_input = JobInput(release_id="r", wave="w", job=job, key=KEY)
    first = ActivityEnvironment()
    with pytest.raises(ApplicationError) as raised:
        first.run(JobActivities(through(proxy)).run_job, job_input)
    assert (raised.value.type, raised.value.non_retryable) == (JOB_NOT_STARTED, True)
    assert raised.value.message == (
        f"Invoke on lambda function backfill failed: AccessDeniedException: {denied}"
    )
    # A later attempt cannot know what an earlier one started: its outcome stays unknown.
    later = ActivityEnvironment()
    later.info = dataclasses.replace(later.info, attempt=2)
    with pytest.raises(ApplicationError) as raised:
        later.run(JobActivities(through(proxy)).run_job, job_input)
    assert raised.value.type == "AwsOperationError"
