"""WaveWorkflow: one wave's deployment, run as a child of its release.

A wave checks its alarms, snapshots its targets and hands the snapshots to the release (the
saga's log, so the release can roll back even if this child is cancelled or terminated),
then shifts each traffic step and bakes it while watching its alarms — only at safe points:
inside its window, outside freezes, not paused. It never fails: its outcome tells the
release what happened, and the release applies the wave's ``on_failure`` policy.

A child per wave keeps each release's history bounded however many waves and targets it
has: the release records gates and the saga; each wave its own snapshots, steps and bakes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    # `from workflows import windows` would load the module inside the sandbox (the package
    # `workflows` already lives there as this module's parent), where ZoneInfo is a
    # restricted proxy that datetime refuses; naming the module in full passes it through.
    import workflows.checks as checks_logic
    import workflows.fleet as fleet_logic
    import workflows.jobs as jobs_logic
    import workflows.windows as windows
    from models.checks import RUN_CHECKS, ChecksInput, ChecksResult
    from models.durations import format_duration
    from models.fleet import (
        FLEET_COMMAND,
        FLEET_DRAIN,
        FLEET_REGISTER,
        FleetBatchInput,
        FleetCommandInput,
        FleetCommandResult,
        FleetWaitResult,
        InstancePhase,
        Registration,
    )
    from models.jobs import JOB_NOT_STARTED, RUN_JOB, JobInput, JobPhase, JobResult, JobStatus
    from models.messages import (
        APPLY_TARGETS,
        CHECK_ALARMS,
        RECORD_SNAPSHOTS_SIGNAL,
        SNAPSHOT_TARGETS,
        SYSTEM_ACTOR,
        WATCH_ALARMS,
        WAVE_PROGRESS_SIGNAL,
        AlarmCheckInput,
        AlarmCheckResult,
        ApplyInput,
        ApplyResult,
        ApplyStepInput,
        ApplyStepResult,
        BakeInput,
        BakeResult,
        Change,
        FreezeInput,
        OperatorInput,
        OverrideInput,
        Snapshot,
        SnapshotsRecorded,
        SnapshotsResult,
        TargetsInput,
        WaveInput,
        WaveOutcome,
        WaveProgress,
        WaveReport,
    )
    from models.plan import TRAFFIC_KINDS, Ec2FleetTarget, Target
    from models.preflight import PREFLIGHT, PreflightResult
    from models.status import TargetPhase, TargetStatus, TimelineEvent, WavePhase
    from workflows.steps import (
        TARGET_HEARTBEAT_TIMEOUT,
        batch_timeout,
        cause,
        due_targets,
        firing_names,
        preflight_timeout,
        read,
        unread_message,
        wave_details,
    )

# Each attempt is a few AWS calls (botocore retries throttling inside it): a minute is
# ample, and it is how long a worker that dies mid-activity holds the wave up.
SNAPSHOT_TIMEOUT = timedelta(minutes=1)
APPLY_TIMEOUT = timedelta(minutes=1)
ALARM_CHECK_TIMEOUT = timedelta(minutes=1)
# A bake heartbeats every poll; three missed polls mean the worker is gone.
BAKE_HEARTBEATS_MISSED = 3
BAKE_MARGIN = timedelta(minutes=5)
# Applying gives up after a bounded number of attempts so the wave's failure policy runs:
# 1+2+4+...+60 s, an AWS outage of about four minutes is waited out first.
APPLY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)
# A fleet's batches report every stage, several reports a second when AWS answers at once:
# each is a signal and a workflow task in the wave and in the release. Its reports go at
# most this often (reports made meanwhile merge into the waiting one); every other report
# of a wave goes at once, so waves without a fleet send theirs as they always did.
FLEET_REPORT_INTERVAL = timedelta(seconds=1)


FleetStageResult = TypeVar("FleetStageResult", FleetWaitResult, FleetCommandResult)


class WaveFailed(Exception):
    """A step of the wave failed; the release applies the wave's ``on_failure`` policy."""


def never_started(err: ActivityError) -> bool:
    """True when a job's activity failed knowing the job never started (see
    ``activities.jobs``): any other failure leaves the job's outcome unknown."""
    reason = err.__cause__
    return isinstance(reason, ApplicationError) and reason.type == JOB_NOT_STARTED


class WaveStopped(Exception):
    """The release asked the wave to stop (abort, rejection elsewhere, cancellation)."""


@workflow.defn
class WaveWorkflow:
    """Snapshot, then shift each traffic step and bake, inside the window and out of freezes."""

    @workflow.init
    def __init__(self, input: WaveInput) -> None:
        self._input = input
        self._paused = input.paused
        self._stop = False
        self._freezes = list(input.freezes)
        self._override_window = input.override_window
        self._override_freeze = input.override_freeze
        self._wake = 0  # bumped by every signal that may change what a wait waits for
        self._progress = WaveProgress(
            phase=WavePhase.DEPLOYING,
            step=input.start_step,
            percent=0,
            targets=[
                TargetStatus(
                    name=t.name,
                    kind=t.kind,
                    resource=t.resource,
                    phase=TargetPhase.SKIPPED if t.name in input.skipped else TargetPhase.PENDING,
                )
                for t in input.targets
            ],
            jobs=[jobs_logic.initial_status(j, j.name in input.jobs_done) for j in input.wave.jobs],
        )
        self._events: list[TimelineEvent] = []  # since the last report to the release
        self._parent = workflow.get_external_workflow_handle(input.parent_id)
        # Reports go to the release in order, one at a time: the report waiting to be sent
        # (a later one merges into it) and the task sending them.
        self._unsent: WaveReport | None = None
        self._sender: asyncio.Future[None] | None = None
        # The report waiting must go at once (not only paced fleet reports merged into it),
        # and when the last one went.
        self._hurry = False
        self._last_sent: datetime | None = None

    # --- the deployment ----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: WaveInput) -> WaveOutcome:
        """Deploy; never fails the workflow: the outcome tells the release what happened."""
        outcome = await self._deploy(input)
        # The Web UI's "Current Details" of the ended wave: how it ended, not the last wait
        # it reported ("baking 20s at 100%").
        self._progress.waiting_for = None
        if outcome.outcome == "stopped":
            self._progress.phase = WavePhase.CANCELLED
        workflow.set_current_details(wave_details(input.wave, self._progress))
        # The release must have every report before it reads the outcome.
        self._hurry = True
        if self._sender is not None:
            await self._sender
        return outcome

    async def _deploy(self, input: WaveInput) -> WaveOutcome:
        wave = input.wave
        # Check and snapshot the world as it is when the wave changes it: after its window,
        # freeze and pause waits (which may last days), and check alarms before every step.
        try:
            for step in range(input.start_step, len(wave.traffic)):
                percent = wave.traffic[step]
                await self._safe_point(first_step=step == 0)
                if step == input.start_step:
                    await self._preflight()
                if wave.alarms:
                    await self._alarms_quiet(step)
                if wave.checks and step == 0:
                    await self._checks(None)
                if step == input.start_step:
                    await self._snapshot_all()
                if step == input.start_step:
                    # Only now does the wave change AWS (its jobs or its targets): the
                    # release logged it as started, hours before if it waited for a window.
                    self._event(
                        "wave_deploying",
                        f"wave {wave.name} deploying: step {step + 1} of {len(wave.traffic)} "
                        f"({percent}%)",
                    )
                if step == 0:
                    await self._run_jobs("before")
                self._progress.step = step
                self._progress.phase = WavePhase.DEPLOYING
                # Status shows the step's targets applying while the batch runs; the CLI
                # marks those done from the batch's heartbeat (client.progress).
                for target in due_targets(self._active_targets(), step):
                    self._target(target.name).phase = TargetPhase.APPLYING
                self._report()
                await self._apply_step(step, percent)
                self._progress.percent = percent
                self._event("traffic_shifted", f"wave {wave.name} at {percent}%")
                if wave.bake > timedelta(0):
                    await self._bake(percent)
                await self._run_jobs(step)
                if step == len(wave.traffic) - 1:
                    await self._run_jobs("after")
        except WaveFailed as failure:
            self._progress.phase = WavePhase.FAILED
            return self._outcome("failed", error=str(failure))
        except (WaveStopped, asyncio.CancelledError):
            # Stopped, or the release was cancelled: it holds every snapshot and rolls back.
            return self._outcome("stopped")
        self._progress.phase = WavePhase.COMPLETED
        return self._outcome("completed")

    async def _alarms_quiet(self, step: int) -> None:
        """Fail the wave if one of its alarms is in ALARM before it shifts ``step``."""
        try:
            result = await read(
                CHECK_ALARMS,
                self._alarm_input(),
                AlarmCheckResult,
                start_to_close_timeout=ALARM_CHECK_TIMEOUT,
                retry_policy=APPLY_RETRY,
                summary=f"check alarms of wave {self._input.wave.name}",
            )
        except ActivityError as err:
            # A missing alarm (or any check that cannot succeed) fails the wave, so the
            # release applies on_failure, rather than failing this workflow unhandled.
            raise self._failure_of(err) from None
        if result.firing:
            names = firing_names(result.firing)
            if step == 0:
                raise WaveFailed(f"alarm already in ALARM before the wave started: {names}")
            percent = self._input.wave.traffic[step]
            raise WaveFailed(f"alarm in ALARM before shifting to {percent}%: {names}")

    async def _preflight(self) -> None:
        """Fail the wave, before it changes anything, if a resource or alarm it needs is
        missing or unreachable with the role that will be used (every problem named)."""
        check = self._input.preflight
        if check is None:
            return
        self._progress.waiting_for = "checking its resources and alarms in AWS"
        try:
            result = await read(
                PREFLIGHT,
                check,
                PreflightResult,
                start_to_close_timeout=preflight_timeout(check),
                retry_policy=APPLY_RETRY,
                summary=f"preflight of wave {self._input.wave.name}",
            )
        except ActivityError as err:
            raise self._failure_of(err) from None
        self._progress.waiting_for = None
        if result.problems:
            raise WaveFailed(
                "preflight found "
                + "; ".join(str(problem) for problem in result.problems)
                + "; nothing was changed"
            )

    async def _snapshot_all(self) -> None:
        """Snapshot every target not yet snapshotted, then have the release record them.

        The record tells the release each target's "before"; the next report (a wait, a
        pause or the first step) follows straight away."""
        missing = [t for t in self._active_targets() if t.name not in self._input.snapshots]
        if not missing:
            return
        self._progress.waiting_for = f"snapshotting {len(missing)} target(s)"
        snapshots = await self._snapshot_batch(missing)
        changes = [
            Change(wave=self._input.wave.name, target=t, snapshot=s)
            for t, s in zip(missing, snapshots, strict=True)
        ]
        for change in changes:
            self._input.snapshots[change.target.name] = change.snapshot
            self._target(change.target.name).before = change.snapshot.display
        # The release must hold every snapshot before anything changes (saga record).
        await self._parent.signal(RECORD_SNAPSHOTS_SIGNAL, SnapshotsRecorded(changes=changes))
        self._progress.waiting_for = None

    async def _snapshot_batch(self, targets: list[Target]) -> list[Snapshot]:
        """Snapshot ``targets`` in one activity; any that cannot be read fails the wave."""
        try:
            result = await workflow.execute_activity(
                SNAPSHOT_TARGETS,
                TargetsInput(
                    release_id=self._input.release_id,
                    application=self._input.application,
                    targets=targets,
                    final_attempt=APPLY_RETRY.maximum_attempts,
                ),
                result_type=SnapshotsResult,
                start_to_close_timeout=batch_timeout(SNAPSHOT_TIMEOUT, len(targets)),
                retry_policy=APPLY_RETRY,
                summary=f"snapshot {len(targets)} target(s) of wave {self._input.wave.name}",
                heartbeat_timeout=TARGET_HEARTBEAT_TIMEOUT,
                # A stopping wave's release compensates only once no write of the
                # batch can still land.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            raise self._failure_of(err) from None
        if result.errors:
            raise WaveFailed("; ".join(result.errors.values()))
        return [result.snapshots[t.name] for t in targets]

    async def _apply_step(self, step: int, percent: int) -> None:
        """Apply the step to its targets in one activity (side by side); all must succeed.
        Then roll out its fleets, one after the other, batch by batch."""
        due = due_targets(self._active_targets(), step)
        fleets = [t for t in due if isinstance(t, Ec2FleetTarget)]
        due = [t for t in due if not isinstance(t, Ec2FleetTarget)]
        if due:
            await self._apply_batch(due, percent)
        for fleet in fleets:
            await self._roll_fleet(fleet)

    async def _apply_batch(self, due: list[Target], percent: int) -> None:
        """Apply ``due`` at ``percent`` in one activity, side by side; all must succeed."""
        for target in due:
            self._target(target.name).phase = TargetPhase.APPLYING
        try:
            result = await workflow.execute_activity(
                APPLY_TARGETS,
                ApplyStepInput(
                    items=[
                        ApplyInput(
                            release_id=self._input.release_id,
                            application=self._input.application,
                            target=t,
                            snapshot=self._input.snapshots[t.name],
                            percent=percent,
                            written=self._target(t.name).written,
                        )
                        for t in due
                    ],
                    final_attempt=APPLY_RETRY.maximum_attempts,
                ),
                result_type=ApplyStepResult,
                start_to_close_timeout=batch_timeout(APPLY_TIMEOUT, len(due)),
                retry_policy=APPLY_RETRY,
                summary=f"apply {len(due)} target(s) of wave {self._input.wave.name} at {percent}%",
                heartbeat_timeout=TARGET_HEARTBEAT_TIMEOUT,
                # A stopping wave's release compensates only once no write of the
                # batch can still land.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            if isinstance(self._failure_of(err), WaveStopped):
                raise WaveStopped from None
            # Every attempt timed out (or the worker lacks the activity): which targets
            # changed is unknown, so none counts as applied; the saga restores them all.
            result = ApplyStepResult(errors={t.name: cause(err) for t in due})
        for target in due:
            if target.name in result.errors:
                # A drifted target was not written: what relman wrote before still counts.
                drifted = target.name in result.drifted
                self._target_failed(target, result.errors[target.name], unknown=not drifted)
            else:
                self._target_applied(target, percent, result.results[target.name])
        if result.errors:
            raise WaveFailed("; ".join(result.errors.values()))

    async def _roll_fleet(self, target: Ec2FleetTarget) -> None:
        """Roll a fleet out batch by batch, each out of its target groups while it changes.

        For each batch: deregister and wait until drained, run the command and wait for
        every invocation (each instance's result recorded), run the wave's checks,
        register again and wait until healthy. A batch that fails stops the fleet and fails
        the wave (its ``on_failure`` applies); the fleet's record of the batches it started
        (``written``) tells the rollback which instances changed. Between batches the wave
        stops if asked, and waits while paused or outside its window. A batch that an
        earlier attempt of the wave finished is not run again."""
        status = self._target(target.name)
        snapshot = self._input.snapshots[target.name]
        registrations = [
            Registration.model_validate(r) for r in snapshot.state.get("registrations", [])
        ]
        try:
            batches = fleet_logic.plan_batches(target, snapshot.state.get("instances", []))
        except fleet_logic.FleetRefused as refused:
            self._target_failed(target, str(refused), unknown=False)
            raise WaveFailed(str(refused)) from None
        status.phase, status.error = TargetPhase.APPLYING, None
        status.instances = fleet_logic.initial_instances(batches)
        status.written = None
        poll = fleet_logic.poll_seconds(self._input.bake_interval)
        earlier = self._input.fleet_done.get(target.name, [])
        for number, ids in enumerate(batches, start=1):
            where = f"batch {number}/{len(batches)}"
            if fleet_logic.done_before(ids, earlier):
                fleet_logic.keep_earlier(status.instances, [i for i in earlier if i.id in ids])
                self._event(
                    "fleet_batch_done",
                    f"{target.resource}: {where} done by an earlier attempt, not run again",
                    target.name,
                )
                continue
            if number > 1:
                await self._safe_point(first_step=False)
                self._progress.phase = WavePhase.DEPLOYING
            batch = FleetBatchInput(
                release_id=self._input.release_id,
                application=self._input.application,
                target=target,
                batch=number,
                instance_ids=ids,
                registrations=[r for r in registrations if r.instance_id in ids],
                poll_seconds=poll,
            )
            # Recorded before the batch leaves service: a rollback puts it back.
            status.written = fleet_logic.record_batch(status.written, ids)
            fleet_logic.set_phase(status.instances, ids, InstancePhase.DRAINING)
            self._progress.waiting_for = f"fleet {target.name} {where}: draining {len(ids)}"
            self._event(
                "fleet_batch_started",
                f"{target.resource}: {where} ({', '.join(ids)}) leaves service",
                target.name,
            )
            self._report(paced=True)
            # A batch registered in no target group has nothing to drain or bring back.
            drained = FleetWaitResult()
            if batch.registrations:
                drained = await self._fleet_stage(
                    target, ids, where, FLEET_DRAIN, batch, FleetWaitResult,
                    fleet_logic.drain_timeout(target), f"drain {target.name} {where}",
                )  # fmt: skip
            if drained.late:
                self._fleet_failed(
                    target, ids, f"{where}: {', '.join(drained.late)} still in service after "
                    f"drain_timeout {format_duration(target.drain_timeout)}",
                )  # fmt: skip
            # Recorded before the command is sent: from now on it may have run.
            status.written = fleet_logic.record_command(status.written)
            fleet_logic.set_phase(status.instances, ids, InstancePhase.RUNNING)
            self._progress.waiting_for = (
                f"fleet {target.name} {where}: running {target.command.document}"
            )
            self._report(paced=True)
            ran = await self._fleet_stage(
                target, ids, where, FLEET_COMMAND,
                FleetCommandInput(
                    **batch.model_dump(),
                    command=target.command,
                    key=fleet_logic.command_key(workflow.info().workflow_id, target.name, number),
                ),
                FleetCommandResult, fleet_logic.command_timeout(target),
                f"{target.command.document} on {target.name} {where}",
            )  # fmt: skip
            fleet_logic.record_results(status.instances, ran.command_id, ran.results)
            if ran.failed:
                failed = "; ".join(
                    f"{r.instance_id} {fleet_logic.result_text(r)}" for r in ran.failed
                )
                self._fleet_failed(
                    target, ids, f"{where}: {target.command.document} failed on {failed}"
                )
            fleet_logic.set_phase(status.instances, ids, InstancePhase.VERIFYING)
            self._report(paced=True)
            if self._input.wave.checks:
                try:
                    await self._checks(None, "after the batch")
                except WaveFailed as failure:
                    self._fleet_failed(target, ids, f"{where}: {failure}")
            self._progress.waiting_for = f"fleet {target.name} {where}: back in service"
            back = FleetWaitResult()
            if batch.registrations:
                back = await self._fleet_stage(
                    target, ids, where, FLEET_REGISTER, batch, FleetWaitResult,
                    fleet_logic.healthy_timeout(target),
                    f"return {target.name} {where} to service",
                )  # fmt: skip
            if back.late:
                self._fleet_failed(
                    target, ids, f"{where}: {', '.join(back.late)} not healthy within "
                    f"healthy_timeout {format_duration(target.healthy_timeout)}",
                )  # fmt: skip
            fleet_logic.set_phase(status.instances, ids, InstancePhase.DONE)
            self._event(
                "fleet_batch_done", f"{target.resource}: {where} done, back in service", target.name
            )
            self._report(paced=True)
        self._progress.waiting_for = None
        total = sum(len(b) for b in batches)
        self._target_applied(
            target,
            100,
            ApplyResult(
                resource=target.resource,
                changed=True,
                display=f"{total} instance(s) done in {len(batches)} batch(es)",
                written=status.written or {},
            ),
        )

    async def _fleet_stage(
        self,
        target: Ec2FleetTarget,
        ids: list[str],
        where: str,
        activity: str,
        input: FleetBatchInput,
        result_type: type[FleetStageResult],
        timeout: timedelta,
        summary: str,
    ) -> FleetStageResult:
        """One stage of a fleet's batch in one heartbeating activity; its failure fails the
        batch (or stops the wave, if the wave is stopping)."""
        try:
            return await workflow.execute_activity(
                activity,
                input,
                result_type=result_type,
                start_to_close_timeout=timeout,
                heartbeat_timeout=fleet_logic.FLEET_HEARTBEAT_TIMEOUT,
                retry_policy=APPLY_RETRY,
                # A stopping wave waits for the stage to end: the rollback then knows
                # whether the command was sent.
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=summary,
            )
        except ActivityError as err:
            failure = self._failure_of(err)
            if isinstance(failure, WaveStopped):
                raise failure from None
            self._fleet_failed(target, ids, f"{where}: {failure}")

    def _fleet_failed(self, target: Ec2FleetTarget, ids: list[str], message: str) -> NoReturn:
        """Fail the fleet at its batch ``ids``: the batch stays out of service, the record
        of what changed stays for the rollback."""
        status = self._target(target.name)
        fleet_logic.batch_failed(status.instances, ids, "its batch failed")
        self._target_failed(target, message, unknown=False)
        raise WaveFailed(f"fleet {target.name} {message}")

    async def _run_jobs(self, point: jobs_logic.Point) -> None:
        """Run the wave's jobs placed at ``point`` one after the other; one that fails
        fails the wave (its ``on_failure`` applies). Jobs done by an earlier attempt of
        the wave are not run again.

        A job whose outcome is unknown (its activity gave up, timed out or was cancelled
        after it may have started the job, or the job was interrupted) fails the wave too,
        and the rollback treats it as applied: a migration is never silently left."""
        wave = self._input.wave
        for job in jobs_logic.jobs_at(wave.jobs, wave.traffic, point):
            status = self._job(job.name)
            if status.phase == JobPhase.SUCCEEDED:
                continue
            if self._stop:  # no job starts once the release asked the wave to stop
                raise WaveStopped
            status.phase, status.error = JobPhase.RUNNING, None
            self._progress.waiting_for = f"running job {job.name} ({job.run.resource})"
            self._event("job_started", f"job {job.name}: {job.run.resource}")
            self._report()
            job_input = JobInput(
                release_id=self._input.release_id,
                application=self._input.application,
                wave=wave.name,
                job=jobs_logic.resolved(
                    job.run,
                    self._input.alarm_region,
                    self._input.alarm_role_arn,
                    self._input.alarm_external_id,
                ),
                key=jobs_logic.job_key(workflow.info().workflow_id, job.name),
                poll_seconds=jobs_logic.poll_seconds(self._input.bake_interval),
            )
            started = workflow.now()
            try:
                result = await self._job_attempt(job_input)
                reference = result.reference
                # An asynchronous job: its completion is checked every interval, on durable
                # timers, until it finishes or its timeout passes.
                while not result.done:
                    interval = jobs_logic.check_interval(job.run)
                    if workflow.now() + interval - started > job.run.timeout:
                        # It was started and may still finish: its outcome is unknown.
                        result = JobResult(
                            succeeded=False,
                            outcome_unknown=True,
                            summary=f"{job.run.resource} did not finish within "
                            f"{format_duration(job.run.timeout)}",
                        )
                        break
                    self._progress.waiting_for = (
                        f"waiting for job {job.name} to finish (checked every "
                        f"{format_duration(interval)})"
                    )
                    await self._wait_or_timeout(lambda: self._stop, interval)
                    if self._stop:
                        self._job_unknown(status, "the wave stopped while it ran")
                        raise WaveStopped
                    result = await self._job_attempt(job_input.model_copy(update={"check": True}))
                result.reference = result.reference or reference
            except ActivityError as err:
                failure = self._failure_of(err)
                reason = cause(err)
                if never_started(err):
                    self._job_ended(status, False, f"job {job.name} did not start: {reason}")
                    raise failure from None
                self._job_unknown(status, reason)
                if isinstance(failure, WaveStopped):
                    raise failure from None
                raise WaveFailed(f"job {job.name} outcome unknown: {reason}") from None
            except asyncio.CancelledError:
                # The wave was cancelled while its job ran: the job goes on in AWS.
                self._job_unknown(status, "the wave was cancelled while it ran")
                raise
            text = "; ".join(
                [f"job {job.name}: {result.summary}"]
                + ([f"log {result.details['log']}"] if "log" in result.details else [])
            )
            status.reference, status.summary = result.reference, result.summary
            if not result.succeeded and result.outcome_unknown:
                self._job_unknown(status, result.summary)
                raise WaveFailed(f"job {job.name} outcome unknown: {result.summary}")
            self._job_ended(status, result.succeeded, text)
            if not result.succeeded:
                raise WaveFailed(f"job {job.name} failed: {result.summary}")
        self._progress.waiting_for = None

    async def _job_attempt(self, input: JobInput) -> JobResult:
        """Run (or check on) a job in one heartbeating activity."""
        return await workflow.execute_activity(
            RUN_JOB,
            input,
            result_type=JobResult,
            start_to_close_timeout=jobs_logic.attempt_timeout(input.job, input.check),
            heartbeat_timeout=jobs_logic.JOB_HEARTBEAT_TIMEOUT,
            retry_policy=APPLY_RETRY,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=f"{'check on ' if input.check else ''}job {input.job.name} "
            f"of wave {input.wave}",
        )

    def _job_ended(self, status: JobStatus, succeeded: bool, message: str) -> None:
        status.finished_at = workflow.now()
        if succeeded:
            status.phase = JobPhase.SUCCEEDED
        else:
            status.phase, status.error = JobPhase.FAILED, message
        self._event("job_succeeded" if succeeded else "job_failed", message)

    def _job_unknown(self, status: JobStatus, reason: str) -> None:
        """The job may have run: status and timeline say so; the rollback undoes it."""
        status.finished_at = workflow.now()
        status.phase, status.outcome_unknown = JobPhase.UNKNOWN, True
        status.summary = f"outcome unknown: {reason}"
        status.error = jobs_logic.unknown_message(status.name, reason)
        self._event("job_outcome_unknown", status.error)

    def _job(self, name: str) -> JobStatus:
        return next(j for j in self._progress.jobs if j.name == name)

    def _target_failed(self, target: Target, error: str, unknown: bool = True) -> None:
        status = self._target(target.name)
        status.phase = TargetPhase.FAILED
        status.error = error
        if unknown:
            # A failed apply may have written part of the step: what the resource holds is
            # no longer known, so neither a retry nor the rollback can check it.
            status.written = None
        self._event("target_failed", f"{target.resource}: {error}", target.name)

    def _target_applied(self, target: Target, percent: int, result: ApplyResult) -> None:
        status = self._target(target.name)
        status.phase = TargetPhase.APPLIED
        status.error = None
        status.after = result.display
        status.written = result.written or None
        status.percent = percent if target.kind in TRAFFIC_KINDS else 100
        self._event(
            "target_applied",
            f"{result.resource}: {status.before} -> {result.display}"
            + (f" ({percent}%)" if target.kind in TRAFFIC_KINDS else ""),
            target.name,
        )

    # --- waits: the bake and the safe points -------------------------------------------------

    async def _bake(self, percent: int) -> None:
        """Hold the step for the wave's bake time, watching its alarms and its checks."""
        if not self._input.wave.checks:
            await self._bake_alarms(percent)
            return
        checks = asyncio.ensure_future(self._checks(percent))
        alarms = asyncio.ensure_future(self._bake_alarms(percent))
        await workflow.wait([checks, alarms], return_when=asyncio.FIRST_EXCEPTION)
        # One failed (or the wave stopped): the other need not go on.
        ended = [t for t in (checks, alarms) if t.done() and not t.cancelled()]
        failed = [t.exception() for t in ended if t.exception() is not None]
        for task in (checks, alarms):
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if failed:
            raise failed[0]  # type: ignore[misc]

    async def _checks(self, percent: int | None, where: str | None = None) -> None:
        """Probe the wave's checks once (before the first step, ``percent`` None, or
        ``where`` a fleet's batch has changed) or for the bake; fail the wave with the
        measured value when one reaches its threshold."""
        wave = self._input.wave
        bake = percent is not None
        try:
            result = await workflow.execute_activity(
                RUN_CHECKS,
                ChecksInput(
                    release_id=self._input.release_id,
                    application=self._input.application,
                    wave=wave.name,
                    checks=wave.checks,
                    duration=wave.bake if bake else timedelta(0),
                    percent=percent or 0,
                    region=self._input.alarm_region,
                    role_arn=self._input.alarm_role_arn,
                    external_id=self._input.alarm_external_id,
                ),
                result_type=ChecksResult,
                start_to_close_timeout=(wave.bake if bake else timedelta(0)) + BAKE_MARGIN,
                heartbeat_timeout=checks_logic.heartbeat_timeout(wave.checks),
                retry_policy=APPLY_RETRY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=f"checks of wave {wave.name}"
                + (f" at {percent}%" if bake else "")
                + (f" {where}" if where else ""),
            )
        except ActivityError as err:
            raise self._failure_of(err) from None
        self._progress.checks = result.results
        failed = next((r for r in result.results if r.failed), None)
        if failed is not None:
            message = checks_logic.failed_message(failed.name, failed.message, percent, where)
            self._event("check_failed", message)
            self._report()
            raise WaveFailed(message)
        self._report()

    async def _bake_alarms(self, percent: int) -> None:
        """Hold the step for the wave's bake time, watching its alarms if it has any."""
        wave = self._input.wave
        self._progress.phase = WavePhase.BAKING
        self._progress.waiting_for = f"baking {format_duration(wave.bake)} at {percent}%"
        self._report()
        if not wave.alarms:
            # Nothing to watch: a durable timer (skipped by time-skipping tests).
            await self._wait_or_timeout(lambda: self._stop, wave.bake)
        else:
            interval = self._input.bake_interval
            # Unread time extends the bake, up to the limit where it fails.
            unread = wave.bake_unread_limit
            try:
                result = await workflow.execute_activity(
                    WATCH_ALARMS,
                    BakeInput(
                        **self._alarm_input().model_dump(),
                        duration=wave.bake,
                        interval=interval,
                        unread_limit=wave.bake_unread_limit,
                        percent=percent,
                    ),
                    result_type=BakeResult,
                    start_to_close_timeout=wave.bake + unread + BAKE_MARGIN,
                    heartbeat_timeout=interval * BAKE_HEARTBEATS_MISSED,
                    retry_policy=APPLY_RETRY,
                    # A cancelled wave ends once its bake has stopped polling (within a
                    # poll), so no bake outlives its wave.
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                    summary=f"bake {wave.name} at {percent}% watching {', '.join(wave.alarms)}",
                )
            except ActivityError as err:
                raise self._failure_of(err) from None
            for gap in result.gaps:
                self._event("alarms_unread", unread_message(gap, percent))
            if result.firing:
                names = firing_names(result.firing)
                self._event("alarm", f"alarm in ALARM while baking at {percent}%: {names}")
                raise WaveFailed(f"alarm in ALARM while baking at {percent}%: {names}")
        self._progress.waiting_for = None
        if self._stop:
            raise WaveStopped

    async def _safe_point(self, first_step: bool) -> None:
        """Wait while paused or outside the window / inside a freeze; stop if asked."""
        wave = self._input.wave
        while True:
            if self._stop:
                raise WaveStopped
            if self._paused:
                self._progress.phase = WavePhase.PAUSED
                self._progress.waiting_for = "paused by an operator"
                self._report()
                await workflow.wait_condition(lambda: not self._paused or self._stop)
                continue
            now = workflow.now()
            window = wave.window
            if self._override_window or not (first_step or wave.on_window_close == "pause"):
                window = None
            freezes = [] if self._override_freeze else self._freezes
            start = windows.next_start(window, freezes, now)
            if start is None:
                raise WaveFailed(
                    f"wave {wave.name} can never start: its window does not open "
                    "again outside freezes within a year"
                )
            if start <= now:
                self._progress.next_start = None
                self._progress.waiting_for = None
                return
            reason = windows.wait_reason(wave.window, freezes, now, start)
            # In the wave's own time zone (its window's) beside UTC.
            opens = windows.local_and_utc(start, wave.window.timezone if wave.window else None)
            self._progress.phase = WavePhase.WAITING_FOR_WINDOW
            self._progress.next_start = start
            self._progress.waiting_for = f"{reason}; next start {opens}"
            self._event("waiting_for_window", f"wave {wave.name} waits until {opens}: {reason}")
            self._report()
            wake = self._wake

            def woken(wake: int = wake) -> bool:
                return self._wake != wake

            await self._wait_or_timeout(woken, start - now, reason)

    async def _wait_or_timeout(
        self, condition: Callable[[], bool], timeout: timedelta, summary: str | None = None
    ) -> bool:
        """Wait for ``condition`` at most ``timeout``; False when the time ran out.

        ``workflow.wait_condition`` raises ``TimeoutError`` at its timeout, which would fail
        the workflow; for a bake or a window wait running out is the normal way to go on.
        """
        try:
            await workflow.wait_condition(condition, timeout=timeout, timeout_summary=summary)
        except TimeoutError:
            return False
        return True

    # --- signals from the release, and the query ---------------------------------------------

    @workflow.signal
    def pause(self, input: OperatorInput) -> None:
        """Stop at the next safe point (between target steps)."""
        self._paused = True
        self._wake += 1

    @workflow.signal
    def resume(self, input: OperatorInput) -> None:
        """Go on after a pause."""
        self._paused = False
        self._wake += 1

    @workflow.signal
    def stop(self, input: OperatorInput) -> None:
        """Finish the step in progress and return what was changed."""
        self._stop = True
        self._wake += 1

    @workflow.signal
    def add_freeze(self, input: FreezeInput) -> None:
        """Respect a freeze added to the running release, including in current waits."""
        self._freezes.append(input.freeze)
        self._wake += 1

    @workflow.signal
    def override_window(self, input: OverrideInput) -> None:
        """Start outside the window (and a freeze, if included)."""
        self._override_window = True
        self._override_freeze = self._override_freeze or input.include_freeze
        self._wake += 1

    @workflow.query
    def progress(self) -> WaveProgress:
        """The wave's live phase, step, traffic and targets."""
        return self._progress

    # --- reports to the release --------------------------------------------------------------

    def _report(self, paced: bool = False) -> None:
        """Tell the release where this wave stands and what happened since the last report.

        One signal per phase change keeps the release's status (and visibility) live while
        its history grows by a handful of events per step, not per target. Progress is
        informational: the wave goes on while one task delivers reports in order, and
        reports made meanwhile become one (the latest progress, every event). A ``paced``
        report (a fleet's stages) waits until ``FLEET_REPORT_INTERVAL`` after the last one.
        """
        events, self._events = self._events, []
        progress = self._progress
        workflow.set_current_details(wave_details(self._input.wave, progress))
        # A copy: the signal is serialized when its task runs, by which time the wave may
        # have moved on, and a report must not carry a later phase than its events.
        report = WaveReport(
            wave=self._input.wave.name, progress=progress.model_copy(deep=True), events=events
        )
        if self._unsent is not None:
            report.events = [*self._unsent.events, *report.events]
        self._unsent = report
        self._hurry = self._hurry or not paced
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send_reports())

    async def _send_reports(self) -> None:
        while self._unsent is not None:
            if not self._hurry and self._last_sent is not None:
                due = self._last_sent + FLEET_REPORT_INTERVAL - workflow.now()
                if due > timedelta(0):
                    with contextlib.suppress(asyncio.TimeoutError):
                        await workflow.wait_condition(lambda: self._hurry, timeout=due)
            report, self._unsent, self._hurry = self._unsent, None, False
            try:
                await self._parent.signal(WAVE_PROGRESS_SIGNAL, report)
            except Exception:  # the release has ended: it reads no more reports
                workflow.logger.warning("wave %s: a progress report was not delivered", report.wave)
            self._last_sent = workflow.now()

    def _outcome(self, outcome: str, error: str | None = None) -> WaveOutcome:
        return WaveOutcome(
            outcome=outcome,
            failed_step=self._progress.step if outcome == "failed" else None,
            error=error,
            targets=self._progress.targets,
            jobs=self._progress.jobs,
            events=self._events,
        )

    def _event(self, kind: str, message: str, target: str | None = None) -> None:
        self._events.append(
            TimelineEvent(
                at=workflow.now(),
                kind=kind,
                message=message,
                actor=SYSTEM_ACTOR,
                wave=self._input.wave.name,
                target=target,
            )
        )

    # --- helpers -----------------------------------------------------------------------------

    def _failure_of(self, err: ActivityError) -> WaveFailed | WaveStopped:
        """What an activity's failure means for the wave.

        Once the wave itself was cancelled (the release was cancelled), an activity that
        ends (cancelled, or timed out on a dead worker) stops the wave: it is no failure for
        ``on_failure`` to act on, nor to wait on an operator. An activity that ends
        cancelled for any other reason (its worker shut down) fails it.
        """
        if workflow.cancellation_reason() is not None:
            return WaveStopped()
        return WaveFailed(cause(err))

    def _active_targets(self) -> list[Target]:
        return [t for t in self._input.targets if t.name not in self._input.skipped]

    def _target(self, name: str) -> TargetStatus:
        return next(t for t in self._progress.targets if t.name == name)

    def _alarm_input(self) -> AlarmCheckInput:
        return AlarmCheckInput(
            release_id=self._input.release_id,
            application=self._input.application,
            wave=self._input.wave.name,
            alarms=self._input.wave.alarms,
            region=self._input.alarm_region,
            role_arn=self._input.alarm_role_arn,
            external_id=self._input.alarm_external_id,
        )
