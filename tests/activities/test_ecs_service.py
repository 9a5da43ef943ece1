"""ECS service task-definition switches against a moto server.

moto's deployments are fake (they never roll), so the tests read the service's own
``taskDefinition`` and ``desiredCount``, as the handler does.
"""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.targets.ecs_service import EcsServiceHandler
from models.plan import EcsServiceTarget
from tests.helpers import writes_of

TASK_DEFINITION_ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/web:{}"


@pytest.fixture
def handler(aws: AwsClients) -> EcsServiceHandler:
    """Cluster ``prod`` with service ``web`` on ``web:1`` x2; ``web:2`` is registered."""
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="prod")
    for _ in range(2):
        ecs.register_task_definition(
            family="web", containerDefinitions=[{"name": "web", "image": "nginx", "memory": 128}]
        )
    ecs.create_service(cluster="prod", serviceName="web", taskDefinition="web:1", desiredCount=2)
    return EcsServiceHandler(aws)


def service(aws: AwsClients) -> tuple[str, int]:
    (found,) = aws.client("ecs").describe_services(cluster="prod", services=["web"])["services"]
    return found["taskDefinition"], found["desiredCount"]


def target(task_definition: str = "web:2", desired_count: int | None = None) -> EcsServiceTarget:
    return EcsServiceTarget(
        name="web-service",
        kind="ecs_service",
        cluster="prod",
        service="web",
        task_definition=task_definition,
        desired_count=desired_count,
    )


def test_snapshot_records_task_definition_and_count(handler: EcsServiceHandler) -> None:
    snapshot = handler.snapshot(target())

    assert snapshot.state == {"task_definition": TASK_DEFINITION_ARN.format(1), "desired_count": 2}
    assert snapshot.display == "web:1 x2"


def test_apply_switches_at_every_step_and_reruns_write_nothing(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target(desired_count=3)
    snapshot = handler.snapshot(new)

    first = handler.apply(new, snapshot, 10)  # not a traffic kind: applies fully at once
    assert first.changed
    assert first.display == "web:2 x3"
    assert service(aws) == (TASK_DEFINITION_ARN.format(2), 3)

    writes = writes_of(aws.client("ecs"))
    for percent in (10, 50, 100):
        rerun = handler.apply(new, snapshot, percent)
        assert not rerun.changed
        assert rerun.display == "web:2 x3"
    assert writes == []
    assert service(aws) == (TASK_DEFINITION_ARN.format(2), 3)


def test_bare_family_resolves_to_its_latest_revision(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target("web")

    result = handler.apply(new, handler.snapshot(new), 100)

    assert result.display == "web:2 x2"
    assert service(aws) == (TASK_DEFINITION_ARN.format(2), 2)


def test_compensate_restores_task_definition_and_count_exactly(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target(desired_count=5)
    before = service(aws)
    snapshot = handler.snapshot(new)
    handler.apply(new, snapshot, 100)
    assert service(aws) == (TASK_DEFINITION_ARN.format(2), 5)

    restored = handler.compensate(new, snapshot)
    assert restored.changed
    assert restored.display == "web:1 x2"
    assert service(aws) == before

    writes = writes_of(aws.client("ecs"))
    again = handler.compensate(new, snapshot)
    assert not again.changed
    assert writes == []
    assert service(aws) == before


def test_compensate_leaves_a_count_the_release_did_not_set(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target()  # no desired_count: scaling belongs to someone else
    snapshot = handler.snapshot(new)
    handler.apply(new, snapshot, 100)
    aws.client("ecs").update_service(cluster="prod", service="web", desiredCount=4)  # autoscaling

    handler.compensate(new, snapshot)

    assert service(aws) == (TASK_DEFINITION_ARN.format(1), 4)


def test_unregistered_task_definition_is_refused_before_any_change(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target("web:9")
    before = service(aws)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, handler.snapshot(new), 100)

    assert raised.value.message == (
        "ecs service prod/web: task definition 'web:9' is not registered"
    )
    assert raised.value.type == "TaskDefinitionNotFound"
    assert raised.value.non_retryable
    assert service(aws) == before


def test_missing_service_is_refused(handler: EcsServiceHandler) -> None:
    missing = target().model_copy(update={"service": "api"})

    with pytest.raises(ApplicationError) as raised:
        handler.snapshot(missing)

    assert raised.value.message == (
        "ecs service prod/api: no active service 'api' in cluster 'prod' (missing)"
    )
    assert raised.value.type == "ServiceNotFound"


# --- drift: someone else switched the service after relman did ----------------------------


def test_apply_reports_the_task_definition_it_wrote(handler: EcsServiceHandler) -> None:
    new = target(desired_count=3)
    applied = handler.apply(new, handler.snapshot(new), 100)
    assert applied.written == {"task_definition": TASK_DEFINITION_ARN.format(2), "desired_count": 3}
    assert applied.written_display == "web:2 x3"
    assert handler.apply(target(), handler.snapshot(target()), 100).written == {
        "task_definition": TASK_DEFINITION_ARN.format(2)
    }


def register_hotfix(aws: AwsClients) -> None:
    """Someone registers ``web:3`` and switches the service to it."""
    aws.client("ecs").register_task_definition(
        family="web", containerDefinitions=[{"name": "web", "image": "nginx:fix", "memory": 128}]
    )
    aws.client("ecs").update_service(
        cluster="prod", service="web", taskDefinition=TASK_DEFINITION_ARN.format(3)
    )


def test_compensate_leaves_a_service_someone_else_switched_alone(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target()
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 100)
    register_hotfix(aws)

    with pytest.raises(ApplicationError) as raised:
        handler.compensate(new, snapshot, applied.written)

    assert (raised.value.type, raised.value.non_retryable) == ("ResourceDrifted", True)
    assert raised.value.message == (
        "target 'web-service' (ecs service prod/web): relman wrote web:2, it now holds web:3; "
        "not restoring it to web:1 x2 without --force"
    )
    assert raised.value.details[0] == {
        "target": "web-service",
        "resource": "ecs service prod/web",
        "written": "web:2",
        "current": "web:3",
        "snapshot": "web:1 x2",
    }
    assert service(aws) == (TASK_DEFINITION_ARN.format(3), 2)

    assert handler.compensate(new, snapshot, applied.written, force=True).changed
    assert service(aws) == (TASK_DEFINITION_ARN.format(1), 2)


def test_compensate_restores_an_untouched_service_and_a_retry_is_a_no_op(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target(desired_count=5)
    before = service(aws)
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 100)

    assert handler.compensate(new, snapshot, applied.written).changed
    assert service(aws) == before
    writes = writes_of(aws.client("ecs"))
    assert not handler.compensate(new, snapshot, applied.written).changed
    assert writes == []


def test_a_further_step_refuses_a_service_switched_since_the_previous_one(
    aws: AwsClients, handler: EcsServiceHandler
) -> None:
    new = target()
    snapshot = handler.snapshot(new)
    applied = handler.apply(new, snapshot, 10)
    register_hotfix(aws)

    with pytest.raises(ApplicationError) as raised:
        handler.apply(new, snapshot, 50, applied.written)

    assert raised.value.message == (
        "target 'web-service' (ecs service prod/web): changed by someone else since relman's "
        "previous step: relman wrote web:2, it now holds web:3; not applying web:2 x2"
    )
    assert service(aws) == (TASK_DEFINITION_ARN.format(3), 2)
