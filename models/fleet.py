"""An ``ec2_fleet`` target's batches: what each instance went through, and the inputs and
results of the activities that take a batch out of service, run its command and bring it
back (``activities.fleet``).

The plan's section is :class:`models.plan.Ec2FleetTarget`; the decisions (batches, minimum
healthy share, what status shows) are in :mod:`workflows.fleet`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from models.plan import Ec2FleetTarget, FleetCommand

FLEET_DRAIN = "fleet_drain"
FLEET_COMMAND = "fleet_command"
FLEET_REGISTER = "fleet_register"


class InstancePhase(StrEnum):
    """Where one instance of a fleet stands."""

    PENDING = "pending"
    DRAINING = "draining"
    RUNNING = "running"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class InstanceStatus(BaseModel):
    """One instance of a fleet as status shows it: its batch (from 1), phase, and what its
    command invocation ended with."""

    id: str
    batch: int
    phase: InstancePhase = InstancePhase.PENDING
    command_id: str | None = None
    # SSM's invocation status (Success, Failed, TimedOut...) and the script's exit code.
    result: str | None = None
    exit_code: int | None = None
    error: str | None = None


class Registration(BaseModel):
    """An instance registered in a target group, on a port (None: the group's own)."""

    target_group: str
    instance_id: str
    port: int | None = None


class FleetBatchInput(BaseModel):
    """One batch of a fleet: its instances and their registrations (from the snapshot)."""

    release_id: str
    application: str | None = None
    target: Ec2FleetTarget
    batch: int
    instance_ids: list[str]
    registrations: list[Registration] = Field(default_factory=list)
    poll_seconds: float = 5.0


class FleetCommandInput(FleetBatchInput):
    """Run ``command`` on the batch, sent at most once for ``key``."""

    command: FleetCommand
    key: str


class InstanceResult(BaseModel):
    """What one instance made of a command."""

    instance_id: str
    status: str
    exit_code: int | None = None
    details: str = ""
    output: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "Success"


class FleetCommandResult(BaseModel):
    """Every instance's invocation of the batch's command."""

    command_id: str
    results: list[InstanceResult]
    already_sent: bool = False

    @property
    def failed(self) -> list[InstanceResult]:
        return [r for r in self.results if not r.succeeded]


class FleetCommandProgress(BaseModel):
    """Heartbeat details of a batch's command: the command sent, the instances finished.
    A retried attempt reads them and waits for the others only, sending nothing."""

    key: str
    command_id: str
    results: dict[str, dict[str, Any]] = Field(default_factory=dict)


class FleetWaitResult(BaseModel):
    """How a batch's drain (or its return to service) ended: each registration's last
    state, by ``target_group instance``, and the instances that did not get there."""

    states: dict[str, str] = Field(default_factory=dict)
    late: list[str] = Field(default_factory=list)
