"""Run Command on EC2 instances, sent at most once per idempotency key.

Shared by every activity that runs an SSM document on instances (a job step's
``ssm_command``, a fleet target's batch). Nothing here knows about jobs, waves or fleets:

- :func:`resolve_instances` turns tag filters (and optionally an Auto Scaling group) into
  the sorted ids of the running instances they choose;
- :func:`send_command_once` sends a document unless a command with the same idempotency
  key was sent already (SSM ``SendCommand`` takes no client token, so the key is written
  into the command's ``Comment`` and looked up with ``ListCommands`` before sending): an
  activity retried after a worker crash finds the command its first attempt sent and
  never runs the document twice;
- :func:`wait_for_invocations` polls ``GetCommandInvocation`` for each instance until all
  reach a final status, calling ``heartbeat`` between polls, and returns one
  :class:`Invocation` per instance (status, exit code, output excerpts).

All functions take plain boto3 clients and raise ``botocore`` errors unchanged; callers
classify them (``activities.errors.aws_call``) and heartbeat in their own way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

# SendCommand's Comment is at most 100 characters.
COMMENT_LIMIT = 100
COMMENT_PREFIX = "relman:"
# Invocation statuses after which nothing changes any more.
FINAL_STATUSES = frozenset(
    {
        "Success",
        "Failed",
        "Cancelled",
        "TimedOut",
        "Undeliverable",
        "Terminated",
        "DeliveryTimedOut",
    }
)
# An invocation is created a moment after SendCommand returns: until then
# GetCommandInvocation answers InvocationDoesNotExist, which is not a failure.
_NOT_YET = "InvocationDoesNotExist"
# Output kept per instance (SSM itself truncates to 24,000 characters).
OUTPUT_EXCERPT = 500
# Instance states a command can reach.
_RUNNING_STATES = ["running"]
# DescribeInstances filters accept up to 200 values each.
_IDS_PER_FILTER = 200


class CommandTimedOut(Exception):
    """Invocations were still running when the caller's deadline passed."""


@dataclass(frozen=True)
class SentCommand:
    """A command sent (or found already sent) for one idempotency key."""

    command_id: str
    instance_ids: list[str]
    already_sent: bool


@dataclass(frozen=True)
class Invocation:
    """What one instance made of a command."""

    instance_id: str
    status: str
    exit_code: int | None = None
    status_details: str = ""
    stdout: str = ""
    stderr: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "Success"


@dataclass
class CommandOutcome:
    """Every instance's invocation of one command."""

    command_id: str
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return bool(self.invocations) and all(i.succeeded for i in self.invocations)

    @property
    def failed(self) -> list[Invocation]:
        return [i for i in self.invocations if not i.succeeded]


def command_comment(key: str) -> str:
    """The ``Comment`` that marks a command sent for idempotency key ``key``.

    Keys longer than the comment allows keep their end (attempt and step are there)."""
    room = COMMENT_LIMIT - len(COMMENT_PREFIX)
    return COMMENT_PREFIX + (key if len(key) <= room else key[-room:])


def tag_filters(tags: Mapping[str, str | Sequence[str]]) -> list[dict[str, Any]]:
    """DescribeInstances filters for instances carrying every tag of ``tags`` (a value or
    a list of accepted values)."""
    filters = []
    for key, value in sorted(tags.items()):
        values = [value] if isinstance(value, str) else list(value)
        filters.append({"Name": f"tag:{key}", "Values": values})
    return filters


def resolve_instances(
    ec2: Any,
    tags: Mapping[str, str | Sequence[str]],
    *,
    autoscaling: Any = None,
    auto_scaling_group: str | None = None,
) -> list[str]:
    """The sorted ids of the running instances carrying all of ``tags`` (and, when
    ``auto_scaling_group`` is given, in that group; ``autoscaling`` is then its client)."""
    filters = tag_filters(tags) + [{"Name": "instance-state-name", "Values": _RUNNING_STATES}]
    group_ids: list[str] | None = None
    if auto_scaling_group:
        if autoscaling is None:
            raise ValueError("an Auto Scaling group needs an autoscaling client")
        groups = autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[auto_scaling_group]
        )["AutoScalingGroups"]
        group_ids = sorted({i["InstanceId"] for g in groups for i in g.get("Instances", [])})
        if not group_ids:
            return []
    found: set[str] = set()
    paginator = ec2.get_paginator("describe_instances")
    id_chunks: list[list[str] | None] = (
        [group_ids[i : i + _IDS_PER_FILTER] for i in range(0, len(group_ids), _IDS_PER_FILTER)]
        if group_ids is not None
        else [None]
    )
    for chunk in id_chunks:
        chunk_filters = filters + (
            [{"Name": "instance-id", "Values": chunk}] if chunk is not None else []
        )
        for page in paginator.paginate(Filters=chunk_filters):
            for reservation in page.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    found.add(instance["InstanceId"])
    return sorted(found)


def find_sent_command(ssm: Any, key: str, instance_ids: Sequence[str]) -> dict[str, Any] | None:
    """The command already sent for ``key`` to (one of) ``instance_ids``, or None.

    ListCommands is asked by instance (its Filters cannot match a comment); the newest
    matching command wins."""
    comment = command_comment(key)
    kwargs: dict[str, Any] = {"InstanceId": instance_ids[0]} if instance_ids else {}
    newest: dict[str, Any] | None = None
    for page in ssm.get_paginator("list_commands").paginate(**kwargs):
        for command in page.get("Commands", []):
            if command.get("Comment") != comment:
                continue
            if newest is None or command.get("RequestedDateTime", 0) >= newest.get(
                "RequestedDateTime", 0
            ):
                newest = command
    return newest


def send_command_once(
    ssm: Any,
    *,
    key: str,
    document: str,
    instance_ids: Sequence[str],
    parameters: Mapping[str, Sequence[str]] | None = None,
    document_version: str | None = None,
    timeout_seconds: int | None = None,
    max_concurrency: str | None = None,
    max_errors: str | None = None,
) -> SentCommand:
    """Send ``document`` to ``instance_ids`` unless a command for ``key`` was sent already.

    ``key`` names one attempt of one piece of work (``<release>:<wave>:<step>:<attempt>``):
    a later attempt that must run the document again uses a new key."""
    if not instance_ids:
        raise ValueError("send_command_once needs at least one instance")
    ids = sorted(instance_ids)
    existing = find_sent_command(ssm, key, ids)
    if existing is not None:
        return SentCommand(
            command_id=existing["CommandId"],
            instance_ids=sorted(existing.get("InstanceIds") or ids),
            already_sent=True,
        )
    kwargs: dict[str, Any] = {
        "DocumentName": document,
        "InstanceIds": ids,
        "Comment": command_comment(key),
        "Parameters": {k: list(v) for k, v in (parameters or {}).items()},
    }
    if document_version:
        kwargs["DocumentVersion"] = document_version
    if timeout_seconds:
        kwargs["TimeoutSeconds"] = int(timeout_seconds)
    if max_concurrency:
        kwargs["MaxConcurrency"] = max_concurrency
    if max_errors:
        kwargs["MaxErrors"] = max_errors
    command = ssm.send_command(**kwargs)["Command"]
    return SentCommand(command_id=command["CommandId"], instance_ids=ids, already_sent=False)


def read_invocation(ssm: Any, command_id: str, instance_id: str) -> Invocation:
    """One instance's invocation of ``command_id`` as it stands (``Pending`` while SSM has
    not created it yet)."""
    try:
        answer = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == _NOT_YET:
            return Invocation(instance_id=instance_id, status="Pending")
        raise
    code = answer.get("ResponseCode")
    return Invocation(
        instance_id=instance_id,
        status=str(answer.get("Status", "Pending")),
        exit_code=int(code) if code is not None and int(code) >= 0 else None,
        status_details=str(answer.get("StatusDetails", "")),
        stdout=str(answer.get("StandardOutputContent", ""))[-OUTPUT_EXCERPT:],
        stderr=str(answer.get("StandardErrorContent", ""))[-OUTPUT_EXCERPT:],
    )


def wait_for_invocations(
    ssm: Any,
    command_id: str,
    instance_ids: Sequence[str],
    *,
    heartbeat: Callable[[], None] = lambda: None,
    poll_seconds: float = 5.0,
    deadline: float | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> CommandOutcome:
    """Poll every instance's invocation of ``command_id`` until all are final.

    ``heartbeat`` is called after each round (an activity passes ``activity.heartbeat``);
    ``pause`` waits between rounds (an activity passes one that returns early when it is
    cancelled). ``deadline`` (``time.monotonic()`` value) raises :class:`CommandTimedOut`."""
    pending = sorted(instance_ids)
    done: dict[str, Invocation] = {}
    while True:
        for instance_id in list(pending):
            invocation = read_invocation(ssm, command_id, instance_id)
            if invocation.final:
                done[instance_id] = invocation
                pending.remove(instance_id)
        heartbeat()
        if not pending:
            return CommandOutcome(command_id, [done[i] for i in sorted(done)])
        if deadline is not None and time.monotonic() >= deadline:
            raise CommandTimedOut(f"command {command_id} still running on {', '.join(pending)}")
        pause(poll_seconds)
