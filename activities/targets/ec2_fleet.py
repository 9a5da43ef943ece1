"""EC2 fleets: instances updated or patched in place with SSM Run Command, batch by batch.

The wave drives a fleet one batch at a time (``workflows.wave``), through three
activities (``activities.fleet``) that call this handler: take the batch out of its target
groups and wait until it has drained, run the command (sent at most once per key, see
:mod:`activities.ssm_commands`) and wait for every invocation, then register it again and
wait until it is healthy. The snapshot records the fleet's instances and where each is
registered; compensation runs the rollback command on the instances that changed, newest
batch first, and puts them back in service.

A fleet's ``ApplyResult.written`` is the record of its batches (``workflows.fleet``):
``{"batches": [{"instances": [...], "command": bool}, ...]}``, ``command`` True once the
batch's command may have run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import ssm_commands
from activities.errors import aws_call
from activities.targets.base import TargetHandler
from models.fleet import FleetWaitResult, InstanceResult, Registration
from models.messages import ApplyResult, CompensateResult, Snapshot
from models.plan import Ec2FleetTarget, FleetCommand

# DescribeTargetHealth states: a drained target is no longer registered ("unused").
DRAINED_STATES = frozenset({"unused"})
HEALTHY_STATES = frozenset({"healthy"})
# A group whose health checks are off reports its targets "unavailable": they serve.
SERVING_STATES = HEALTHY_STATES | {"unavailable"}
# A restore polls target health and invocations this often.
RESTORE_POLL_SECONDS = 2.0


class NoInstances(Exception):
    """A fleet's tags or Auto Scaling group choose no running instance."""


class FleetNotDriven(Exception):
    """An ec2_fleet target was handed to a one-call apply: the wave rolls fleets out itself."""


class FleetRollbackFailed(Exception):
    """The rollback command failed on some instances (or they did not come back healthy)."""


def _key(registration: Registration) -> str:
    return f"{registration.target_group} {registration.instance_id}"


def _target(registration: Registration) -> dict[str, Any]:
    target: dict[str, Any] = {"Id": registration.instance_id}
    if registration.port is not None:
        target["Port"] = registration.port
    return target


def registrations_of(snapshot: Snapshot) -> list[Registration]:
    """The registrations a fleet's snapshot recorded."""
    return [Registration.model_validate(r) for r in snapshot.state.get("registrations", [])]


def invocation_result(invocation: ssm_commands.Invocation) -> InstanceResult:
    """An SSM invocation as the fleet records it."""
    return InstanceResult(
        instance_id=invocation.instance_id,
        status=invocation.status,
        exit_code=invocation.exit_code,
        details=invocation.status_details,
        output=(invocation.stderr or invocation.stdout).strip(),
    )


class Ec2FleetHandler(TargetHandler):
    """``ec2_fleet`` targets."""

    kind = "ec2_fleet"

    # --- snapshot -------------------------------------------------------------------------

    def instances(self, target: Ec2FleetTarget) -> list[str]:
        """The sorted ids of the running instances the fleet is made of now."""
        chosen = target.instances
        with aws_call("ec2:DescribeInstances", target.resource):
            return ssm_commands.resolve_instances(
                self.client("ec2", target),
                chosen.tags,
                autoscaling=self.client("autoscaling", target)
                if chosen.auto_scaling_group
                else None,
                auto_scaling_group=chosen.auto_scaling_group,
            )

    def snapshot(self, target: Ec2FleetTarget) -> Snapshot:
        ids = self.instances(target)
        if not ids:
            raise ApplicationError(
                f"target {target.name!r} ({target.resource}): no running instance",
                type=NoInstances.__name__,
                non_retryable=True,
            )
        chosen = set(ids)
        elbv2 = self.client("elbv2", target) if target.target_groups else None
        registrations: list[Registration] = []
        for group in target.target_groups:
            with aws_call("elasticloadbalancing:DescribeTargetHealth", group):
                found = elbv2.describe_target_health(TargetGroupArn=group)  # type: ignore[union-attr]
            for description in found["TargetHealthDescriptions"]:
                registered = description["Target"]
                if registered["Id"] in chosen:
                    registrations.append(
                        Registration(
                            target_group=group,
                            instance_id=registered["Id"],
                            port=registered.get("Port"),
                        )
                    )
        registrations.sort(key=lambda r: (r.target_group, r.instance_id, r.port or 0))
        groups = len({r.target_group for r in registrations})
        return Snapshot(
            resource=target.resource,
            exists=True,
            state={
                "instances": ids,
                "registrations": [r.model_dump(mode="json") for r in registrations],
            },
            display=f"{len(ids)} instance(s)"
            + (f", registered in {groups} target group(s)" if target.target_groups else ""),
        )

    def apply(
        self,
        target: Ec2FleetTarget,
        snapshot: Snapshot,
        percent: int,
        written: dict[str, Any] | None = None,
    ) -> ApplyResult:
        raise ApplicationError(
            f"target {target.name!r}: an ec2_fleet is rolled out batch by batch by its wave, "
            "not in one call",
            type=FleetNotDriven.__name__,
            non_retryable=True,
        )

    def show(self, target: Ec2FleetTarget, written: dict[str, Any]) -> str:
        batches = written.get("batches", [])
        count = sum(len(b["instances"]) for b in batches)
        return f"{count} instance(s) in {len(batches)} batch(es)"

    # --- a batch, one stage at a time --------------------------------------------------------

    def drain(
        self,
        target: Ec2FleetTarget,
        registrations: Sequence[Registration],
        *,
        heartbeat: Callable[[], None],
        pause: Callable[[float], None],
        poll_seconds: float,
    ) -> FleetWaitResult:
        """Deregister ``registrations`` and wait until each has drained (at most the
        target's ``drain_timeout``). Deregistering twice is harmless."""
        if not registrations:
            return FleetWaitResult()
        elbv2 = self.client("elbv2", target)
        # Only what is registered now: ELBv2 refuses to deregister a target it does not
        # hold (InvalidTarget), as after a retry or for a batch that never came back.
        states = self._states(target, registrations)
        for group, members in _by_group(registrations).items():
            still = [r for r in members if states.get(_key(r), "unused") not in DRAINED_STATES]
            if still:
                with aws_call("elasticloadbalancing:DeregisterTargets", group):
                    elbv2.deregister_targets(
                        TargetGroupArn=group, Targets=[_target(r) for r in still]
                    )
        return self._wait(
            target,
            registrations,
            DRAINED_STATES,
            target.drain_timeout.total_seconds(),
            heartbeat,
            pause,
            poll_seconds,
        )

    def register(
        self,
        target: Ec2FleetTarget,
        registrations: Sequence[Registration],
        *,
        heartbeat: Callable[[], None],
        pause: Callable[[float], None],
        poll_seconds: float,
    ) -> FleetWaitResult:
        """Register ``registrations`` again and wait until each is healthy (at most the
        target's ``healthy_timeout``). Registering twice is harmless."""
        if not registrations:
            return FleetWaitResult()
        elbv2 = self.client("elbv2", target)
        for group, members in _by_group(registrations).items():
            with aws_call("elasticloadbalancing:RegisterTargets", group):
                elbv2.register_targets(TargetGroupArn=group, Targets=[_target(r) for r in members])
        return self._wait(
            target,
            registrations,
            SERVING_STATES,
            target.healthy_timeout.total_seconds(),
            heartbeat,
            pause,
            poll_seconds,
        )

    def _wait(
        self,
        target: Ec2FleetTarget,
        registrations: Sequence[Registration],
        wanted: frozenset[str],
        timeout: float,
        heartbeat: Callable[[], None],
        pause: Callable[[float], None],
        poll_seconds: float,
    ) -> FleetWaitResult:
        """Poll the registrations' health until each is in ``wanted``; the ones that are
        not by ``timeout`` seconds are ``late``."""
        deadline = time.monotonic() + timeout
        while True:
            states = self._states(target, registrations)
            heartbeat()
            late = sorted(
                {r.instance_id for r in registrations if states.get(_key(r)) not in wanted}
            )
            if not late or time.monotonic() >= deadline:
                return FleetWaitResult(states=states, late=late)
            pause(poll_seconds)

    def _states(
        self, target: Ec2FleetTarget, registrations: Sequence[Registration]
    ) -> dict[str, str]:
        """Each registration's health state now, by ``target_group instance``."""
        elbv2 = self.client("elbv2", target)
        states: dict[str, str] = {}
        for group, members in _by_group(registrations).items():
            with aws_call("elasticloadbalancing:DescribeTargetHealth", group):
                found = elbv2.describe_target_health(
                    TargetGroupArn=group, Targets=[_target(r) for r in members]
                )["TargetHealthDescriptions"]
            for description in found:
                registered = description["Target"]
                states[f"{group} {registered['Id']}"] = description["TargetHealth"]["State"]
        return states

    def run(
        self,
        target: Ec2FleetTarget,
        command: FleetCommand,
        key: str,
        instance_ids: Sequence[str],
        *,
        command_id: str | None,
        done: dict[str, InstanceResult],
        on_sent: Callable[[str], None],
        on_result: Callable[[InstanceResult], None],
        pause: Callable[[float], None],
        poll_seconds: float,
    ) -> tuple[str, bool]:
        """Send ``command`` to the instances (unless ``command_id``, or a command for
        ``key``, was sent already) and wait until every instance's invocation is final.

        ``done`` holds invocations an earlier attempt saw end: they are not read again.
        Returns the command id and whether it had been sent before this call."""
        ssm = self.client("ssm", target)
        already = command_id is not None
        if command_id is None:
            with aws_call("ssm:SendCommand", target.resource):
                sent = ssm_commands.send_command_once(
                    ssm,
                    key=key,
                    document=command.document,
                    document_version=command.document_version,
                    instance_ids=list(instance_ids),
                    parameters=command.ssm_parameters,
                    timeout_seconds=int(command.timeout.total_seconds()),
                )
            command_id, already = sent.command_id, sent.already_sent
        on_sent(command_id)
        pending = [i for i in instance_ids if i not in done]
        deadline = time.monotonic() + command.timeout.total_seconds()
        with aws_call("ssm:GetCommandInvocation", target.resource):
            while pending:
                for instance_id in list(pending):
                    invocation = ssm_commands.read_invocation(ssm, command_id, instance_id)
                    if invocation.final:
                        pending.remove(instance_id)
                        on_result(invocation_result(invocation))
                if not pending:
                    break
                if time.monotonic() >= deadline:
                    for instance_id in pending:
                        on_result(
                            InstanceResult(
                                instance_id=instance_id,
                                status="TimedOut",
                                details="relman stopped waiting for it after "
                                f"{int(command.timeout.total_seconds())} s",
                            )
                        )
                    break
                on_sent(command_id)  # a heartbeat between polls
                pause(poll_seconds)
        return command_id, already

    # --- rollback ---------------------------------------------------------------------------

    def compensate(
        self,
        target: Ec2FleetTarget,
        snapshot: Snapshot,
        written: dict[str, Any] | None = None,
        force: bool = False,
    ) -> CompensateResult:
        """Run the rollback command on the batches that changed, newest first, each out of
        its target groups while it runs, and put them back in service. Every batch is
        undone even when one fails; instances whose rollback command failed stay out of
        service, and the restore then fails (non-retryable) naming them."""
        batches = (written or {}).get("batches", [])
        if not batches:
            return CompensateResult(
                resource=target.resource, changed=False, display=snapshot.display
            )
        registrations = registrations_of(snapshot)
        info = activity.info() if activity.in_activity() else None
        # Retries of this restore find the rollback commands they sent (same activity id);
        # a later rollback (an operator's retry) is a new activity and runs them again.
        attempt = info.activity_id if info else "local"
        workflow_id = info.workflow_id if info else "local"
        # The restore activity heartbeats while this runs (activities.release).
        beat: Callable[[], None] = lambda: None  # noqa: E731
        pause = time.sleep  # a restore is never cancelled: it runs to its end
        undone: list[str] = []
        problems: list[str] = []
        for number in range(len(batches), 0, -1):
            batch = batches[number - 1]
            ids = list(batch["instances"])
            members = [r for r in registrations if r.instance_id in ids]
            self.drain(
                target, members, heartbeat=beat, pause=pause, poll_seconds=RESTORE_POLL_SECONDS
            )
            broken: set[str] = set()
            if batch.get("command") and target.rollback != "none":
                results: list[InstanceResult] = []
                self.run(
                    target,
                    target.rollback,
                    f"{workflow_id}:{target.name}:undo{number}:{attempt}",
                    ids,
                    command_id=None,
                    done={},
                    on_sent=lambda _id: beat(),
                    on_result=results.append,
                    pause=pause,
                    poll_seconds=RESTORE_POLL_SECONDS,
                )
                failed = [r for r in results if not r.succeeded]
                broken = {r.instance_id for r in failed}
                problems += [
                    f"{r.instance_id} {r.status}"
                    + (f" (exit {r.exit_code})" if r.exit_code is not None else "")
                    for r in failed
                ]
            # An instance whose rollback failed stays out of service, for an operator.
            back = self.register(
                target,
                [r for r in members if r.instance_id not in broken],
                heartbeat=beat,
                pause=pause,
                poll_seconds=RESTORE_POLL_SECONDS,
            )
            problems += [f"{i} not healthy again" for i in back.late]
            undone += ids
        if problems:
            raise ApplicationError(
                f"target {target.name!r}: rollback of {target.resource} failed: "
                + "; ".join(problems),
                type=FleetRollbackFailed.__name__,
                non_retryable=True,
            )
        how = (
            "back in service (rollback: none, the command was not undone)"
            if target.rollback == "none"
            else f"rolled back with {target.rollback.document} and back in service"
        )
        return CompensateResult(
            resource=target.resource, changed=True, display=f"{len(undone)} instance(s) {how}"
        )


def _by_group(registrations: Sequence[Registration]) -> dict[str, list[Registration]]:
    groups: dict[str, list[Registration]] = {}
    for r in registrations:
        groups.setdefault(r.target_group, []).append(r)
    return groups
