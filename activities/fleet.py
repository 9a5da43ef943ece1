"""The activities that move one batch of an ``ec2_fleet`` through its stages: out of its
target groups (drained), its command run on every instance, back in service (healthy).

Each is safe to run again: deregistering and registering twice change nothing, and the
command is sent at most once per key (``activities.ssm_commands``). The command activity
heartbeats the command id and every invocation that has ended; a retried attempt (the
worker died) reads them back, sends nothing and waits only for the other instances.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from temporalio import activity

from activities.aws import AwsClients, acting_for
from activities.errors import classified
from activities.targets.ec2_fleet import Ec2FleetHandler
from models.fleet import (
    FLEET_COMMAND,
    FLEET_DRAIN,
    FLEET_REGISTER,
    FleetBatchInput,
    FleetCommandInput,
    FleetCommandProgress,
    FleetCommandResult,
    FleetWaitResult,
    InstanceResult,
)


def patient_pause(seconds: float) -> None:
    """Wait between polls. A cancelled stage still waits for what it started (a command
    runs on regardless; the rollback must know how it ended), so once cancelled it keeps
    polling at the same pace rather than returning at once."""
    activity.wait_for_cancelled_sync(seconds)
    if activity.is_cancelled():
        time.sleep(seconds)


class FleetActivities:
    """A fleet batch's stages; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients, pause: Callable[[float], None] | None = None):
        self.handler = Ec2FleetHandler(aws)
        self._pause = pause or patient_pause

    @activity.defn(name=FLEET_DRAIN)
    def fleet_drain(self, input: FleetBatchInput) -> FleetWaitResult:
        """Take the batch out of its target groups and wait until it has drained."""
        target = input.target
        with acting_for(input.release_id, input.application), classified(target.resource):
            return self.handler.drain(
                target,
                input.registrations,
                heartbeat=activity.heartbeat,
                pause=self._pause,
                poll_seconds=input.poll_seconds,
            )

    @activity.defn(name=FLEET_REGISTER)
    def fleet_register(self, input: FleetBatchInput) -> FleetWaitResult:
        """Put the batch back in its target groups and wait until it is healthy."""
        target = input.target
        with acting_for(input.release_id, input.application), classified(target.resource):
            return self.handler.register(
                target,
                input.registrations,
                heartbeat=activity.heartbeat,
                pause=self._pause,
                poll_seconds=input.poll_seconds,
            )

    @activity.defn(name=FLEET_COMMAND)
    def fleet_command(self, input: FleetCommandInput) -> FleetCommandResult:
        """Run the batch's command (sent once per key) and wait for every instance."""
        target = input.target
        progress = self._earlier_progress(input.key) or FleetCommandProgress(
            key=input.key, command_id=""
        )
        done = {i: InstanceResult.model_validate(r) for i, r in progress.results.items()}

        def sent(command_id: str) -> None:
            progress.command_id = command_id
            # A plain JSON dict reads back the same under any data converter.
            activity.heartbeat(progress.model_dump(mode="json"))

        def finished(result: InstanceResult) -> None:
            done[result.instance_id] = result
            progress.results[result.instance_id] = result.model_dump(mode="json")
            activity.heartbeat(progress.model_dump(mode="json"))

        with acting_for(input.release_id, input.application), classified(target.resource):
            command_id, already = self.handler.run(
                target,
                input.command,
                input.key,
                input.instance_ids,
                command_id=progress.command_id or None,
                done=done,
                on_sent=sent,
                on_result=finished,
                pause=self._pause,
                poll_seconds=input.poll_seconds,
            )
        activity.logger.info(
            "fleet %s batch %d: command %s%s", target.name, input.batch, command_id,
            " (sent by an earlier attempt)" if already else "",
        )  # fmt: skip
        return FleetCommandResult(
            command_id=command_id,
            results=[done[i] for i in input.instance_ids],
            already_sent=already,
        )

    def _earlier_progress(self, key: str) -> FleetCommandProgress | None:
        """What an earlier attempt of this batch's command heartbeated (None on a first
        attempt, or from details of another shape)."""
        details = activity.info().heartbeat_details
        if not details:
            return None
        try:
            progress = FleetCommandProgress.model_validate(details[0])
        except ValidationError as exc:
            activity.logger.info("fleet heartbeat not used (%s)", exc)
            return None
        if progress.key != key or not progress.command_id:
            return None
        activity.logger.info(
            "fleet command %s sent by an earlier attempt; %d instance(s) already finished",
            progress.command_id,
            len(progress.results),
        )
        return progress

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [self.fleet_drain, self.fleet_command, self.fleet_register]
