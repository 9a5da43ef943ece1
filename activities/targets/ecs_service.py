"""ECS services: the release switches a service to a task-definition revision.

There is no traffic split: any step applies fully. The snapshot records the service's task
definition ARN and desired count; compensation switches back. Verification reads
``DescribeServices``' ``taskDefinition`` and ``desiredCount`` (moto's deployments are fake,
and on AWS a deployment's progress is the service's business, watched through alarms).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from temporalio.exceptions import ApplicationError

from activities.errors import aws_call, error_code, raise_aws_error
from activities.targets.base import TargetHandler
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import EcsServiceTarget


class ServiceNotFound(Exception):
    """The service does not exist in the cluster, or is being deleted."""


class TaskDefinitionNotFound(Exception):
    """The plan names a task definition that is not registered."""


def _invalid(target: EcsServiceTarget, error: type[Exception], reason: str) -> ApplicationError:
    return ApplicationError(f"{target.resource}: {reason}", type=error.__name__, non_retryable=True)


def _short(task_definition_arn: str) -> str:
    """``web:3`` for ``arn:aws:ecs:...:task-definition/web:3``."""
    return task_definition_arn.rsplit("/", 1)[-1]


def _describe(task_definition_arn: str, desired_count: int) -> str:
    return f"{_short(task_definition_arn)} x{desired_count}"


def _held(target: EcsServiceTarget, current: tuple[str, int]) -> dict[str, Any]:
    """The service as ``ApplyResult.written`` records it: its task definition ARN, and its
    desired count only where the release sets one (else scaling is someone else's)."""
    held: dict[str, Any] = {"task_definition": current[0]}
    if target.desired_count is not None:
        held["desired_count"] = current[1]
    return held


class EcsServiceHandler(TargetHandler):
    """``ecs_service`` targets."""

    kind = "ecs_service"

    def _service(self, target: EcsServiceTarget) -> dict[str, Any]:
        with aws_call("ecs:DescribeServices", target.resource):
            answer = self.client("ecs", target).describe_services(
                cluster=target.cluster, services=[target.service]
            )
        # A missing service is not an error for DescribeServices: it is listed as a failure.
        services = [s for s in answer["services"] if s.get("status") == "ACTIVE"]
        if not services:
            status = answer["services"][0]["status"] if answer["services"] else "MISSING"
            raise _invalid(
                target,
                ServiceNotFound,
                f"no active service {target.service!r} in cluster {target.cluster!r} "
                f"({status.lower()})",
            )
        return dict(services[0])

    def _task_definition_arn(self, target: EcsServiceTarget, name: str) -> str:
        """The full ARN of ``name`` (family, family:revision or ARN)."""
        # A bare family means its latest ACTIVE revision; resolving it pins the revision
        # the release applies, and makes comparison with the service's ARN exact.
        try:
            answer = self.client("ecs", target).describe_task_definition(taskDefinition=name)
        except ClientError as exc:
            # ECS answers a generic ClientException for an unknown task definition.
            if error_code(exc) == "ClientException":
                raise _invalid(
                    target,
                    TaskDefinitionNotFound,
                    f"task definition {name!r} is not registered",
                ) from exc
            raise_aws_error(exc, "ecs:DescribeTaskDefinition", target.resource)
        return str(answer["taskDefinition"]["taskDefinitionArn"])

    def _current(self, target: EcsServiceTarget) -> tuple[str, int]:
        service = self._service(target)
        task_definition = service["taskDefinition"]
        if not task_definition.startswith("arn:"):
            # moto echoes UpdateService's taskDefinition as given; AWS always answers ARNs.
            task_definition = self._task_definition_arn(target, task_definition)
        return task_definition, int(service["desiredCount"])

    def _update(self, target: EcsServiceTarget, task_definition: str, desired_count: int) -> None:
        with aws_call("ecs:UpdateService", target.resource):
            self.client("ecs", target).update_service(
                cluster=target.cluster,
                service=target.service,
                taskDefinition=task_definition,
                desiredCount=desired_count,
            )

    def snapshot(self, target: EcsServiceTarget) -> Snapshot:
        task_definition, desired_count = self._current(target)
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={"task_definition": task_definition, "desired_count": desired_count},
            display=_describe(task_definition, desired_count),
        )

    def show(self, target: EcsServiceTarget, written: dict[str, Any]) -> str:
        count = written.get("desired_count")
        definition = _short(written["task_definition"])
        return definition if count is None else f"{definition} x{count}"

    def apply(
        self,
        target: EcsServiceTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        wanted_definition = self._task_definition_arn(target, target.task_definition)
        current = self._current(target)
        wanted = (
            wanted_definition,
            current[1] if target.desired_count is None else target.desired_count,
        )
        unchanged = current == wanted
        if not unchanged:
            # UpdateService has no condition to put on the write: compare right before it
            # (a change landing in between is not detected).
            self.check_step(target, snapshot, written, _held(target, current), _describe(*wanted))
            self._update(target, *wanted)
            current = self._current(target)
        return self.result(target, not unchanged, _describe(*current), _held(target, current))

    def compensate(
        self,
        target: EcsServiceTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        current = self._current(target)
        # The desired count goes back only if the release set one: otherwise it belongs to
        # whoever scales the service (autoscaling), and restoring it would undo their work.
        wanted = (
            snapshot.state["task_definition"],
            current[1] if target.desired_count is None else snapshot.state["desired_count"],
        )
        unchanged = current == wanted
        if not unchanged:
            # No conditional UpdateService: compare right before the write.
            self.check_rollback(target, snapshot, written, force, _held(target, current))
            self._update(target, *wanted)
            current = self._current(target)
        return CompensateResult(
            resource=target.resource, changed=not unchanged, display=_describe(*current)
        )
