"""ReleaseWorkflow: one release, from submission to its end.

The release runs its waves as a DAG: each wave waits for its predecessors, then for its
approval gate, then runs its deployment as a ``WaveWorkflow`` child (which keeps each
release's history bounded however many targets it has). Waves signal their snapshots to the
release before changing anything, so the release holds the saga's log and runs the rollback,
newest change first, whenever a wave fails, a gate rejects, an operator aborts or the
workflow is cancelled. Operators steer it through validated Updates; anyone may query it.

Decisions that need no Temporal API live in plain modules, called by name: ``gates`` (who
may decide a gate and what it still needs), ``release_state`` (phases, pending approvals,
targets, overlap keys, saga order), ``notifications`` (what a timeline entry notifies).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
)

with workflow.unsafe.imports_passed_through():
    # The worker's module, which holds the meter provider (see its docstring).
    import common.metrics as metrics
    import workflows.fleet as fleet_logic
    import workflows.jobs as jobs_logic
    from common.search_attributes import (
        SA_APPROVERS,
        SA_PHASE,
    )
    from models.jobs import RUN_JOB, JobInput, JobPhase, JobResult, JobStatus
    from models.locks import (
        LOCK_ANSWER_SIGNAL,
        RELEASE_LOCKS,
        REQUEST_LOCKS,
        RESOURCE_LOCKS,
        LockAnswer,
        LockAnswers,
        LockKey,
        ReleaseLocksInput,
        RequestLocksInput,
        ResourceLocks,
        ResourceLocksInput,
    )
    from models.messages import (
        COMPENSATE_TARGET,
        NOTIFY,
        NOTIFY_DESTINATIONS,
        RECORD_SNAPSHOTS_SIGNAL,
        SYSTEM_ACTOR,
        WAVE_PROGRESS_SIGNAL,
        WAVE_WORKFLOW,
        Change,
        CompensateInput,
        CompensateResult,
        DecisionInput,
        DecisionResult,
        FreezeInput,
        Notification,
        NotifyDestinationsInput,
        NotifyDestinationsResult,
        NotifyInput,
        NotifyResult,
        OperatorInput,
        OperatorResult,
        OverrideInput,
        ReleaseInput,
        ReleaseResult,
        SnapshotsRecorded,
        TargetActionInput,
        WaveActionInput,
        WaveInput,
        WaveOutcome,
        WaveReport,
        check_decision,
        wave_workflow_id,
    )
    from models.plan import Ec2FleetTarget, Freeze, ReleasePlan, Wave
    from models.policy import (
        LOAD_POLICY,
        LoadPolicyInput,
        Policy,
        PolicySnapshot,
        plan_violations,
    )
    from models.preflight import PREFLIGHT, PreflightInput, PreflightResult, preflight_input
    from models.signing import (
        DecisionAction,
        DecisionRefused,
        SignedDecision,
        plan_digest,
        verify_decision,
    )
    from models.status import (
        FINAL_PHASES,
        ApprovalRecord,
        PolicyInfo,
        ReleasePhase,
        ReleaseStatus,
        StatusRequest,
        TargetPhase,
        TimelineEvent,
        TimelinePage,
        TimelineRequest,
        WavePhase,
        WaveStatus,
    )
    from workflows import gates
    from workflows.gates import Roster, operator_refusal
    from workflows.notifications import notification_for, notified_event
    from workflows.release_state import (
        WAVE_ENDS,
        active_phase,
        changed_nothing,
        current_details,
        final_phase,
        initial_status,
        merge_targets,
        newest_applied_first,
        pending_approvals,
        resolved_target,
        wave_of_target,
    )
    from workflows.steps import (
        RESOURCE_DRIFTED,
        TARGET_HEARTBEAT_TIMEOUT,
        cause,
        child_failure,
        failure_type,
        preflight_timeout,
        read,
    )

# Notifications run beside the release and never hold it up: a few attempts with backoff,
# then the failure is recorded in the timeline (`notification_failed`) and the release goes on.
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
NOTIFY_DESTINATIONS_TIMEOUT = timedelta(seconds=30)
# Per attempt: a dead worker delays a restore by this much.
COMPENSATE_TIMEOUT = timedelta(minutes=1)
# Compensation rides out transient errors (throttling, 5xx, an AWS outage) for this long,
# then hands the target to an operator (rollback_failed, notified) instead of retrying
# silently forever; a non-retryable error (access denied, drift) does so at once.
COMPENSATE_LIMIT = timedelta(minutes=30)
COMPENSATE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)

# The organisation policy is read at the start, at every gate and deployment, and for
# every decision; reading it is a file, S3 or SSM read.
POLICY_TIMEOUT = timedelta(seconds=30)
POLICY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)
# Refused attempts by identified callers recorded per wave (or per release for operator
# actions); beyond that they are refused without a record, so spam cannot grow the history.
REFUSALS_RECORDED = 10

# Each resource the release changes is held by a lock workflow (no two releases change one
# resource at once); asking for the locks is one activity, answered by signal when queued.
LOCK_TIMEOUT = timedelta(minutes=1)
LOCK_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
LOCK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
# Naming the resources asks AWS (STS) for the worker's account: an AWS that does not answer
# for about half a minute (1+2+4+8+16 s between six attempts) refuses the release, which
# has changed nothing yet, rather than keeping it pending without a word. The release's
# preflight (every resource and alarm of the plan exists and is reachable with the roles
# that will be used) retries as long.
RESOURCE_KEYS_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=6,
)
# A wave deploys with the policy as read by the decision that let it go (an approval reads
# it as it is handled); older than this, it is read again.
POLICY_FRESH_FOR = timedelta(minutes=1)
# A wave that starts within this long of the release's own preflight does not check the
# same resources again (a one-wave release started at once would read everything twice).
PREFLIGHT_FRESH_FOR = timedelta(minutes=1)

# The one patch id left, deprecated (step 2 of CONTRIBUTING.md's patched -> deprecate_patch
# -> remove): releases that relman 1.4 started recorded its marker, and replay through the
# ``workflow.deprecate_patch`` at the start of ``run``.
LOCAL_READS = "local-reads"

# A timeline entry waiting to be written: (kind, message, fields).
Entry = tuple[str, str, dict[str, str | None]]


class StopRelease(Exception):
    """Raised inside a wave's branch of the release to end it when the release is stopping."""


@workflow.defn
class ReleaseWorkflow:
    """Runs a release plan's waves in ``after`` order, rolling back on failure or rejection."""

    @workflow.init
    def __init__(self, input: ReleaseInput) -> None:
        self._plan: ReleasePlan = input.plan
        self._status: ReleaseStatus = initial_status(input.plan)
        # The saga's log: every target's snapshot, recorded by its wave before it changes it.
        self._saga: list[Change] = []
        # The end the release is heading for once a wave rejected or failed it, or an
        # operator aborted it; and whether that end rolls back what was changed.
        self._stopping: ReleasePhase | None = None
        self._rollback_requested = False
        self._rollbacks_running = 0
        self._retry_rollback = False
        self._overrides: dict[str, bool] = {}  # wave -> the override includes freezes
        # wave -> (retry | rollback | skip, the operator's input), for waves paused on failure
        self._decisions: dict[str, tuple[str, WaveActionInput | TargetActionInput]] = {}
        self._failed_waves: set[str] = set()
        # Targets whose rollback an operator skipped. A target skipped while deploying is
        # not among them: it may have shifted traffic in earlier steps, so it is restored.
        self._rollback_skipped: set[str] = set()
        self._job_undos: dict[str, int] = {}  # compensations started, per job
        # Targets an operator told the rollback to overwrite although someone else changed
        # them since relman wrote them (relman rollback --force).
        self._forced: set[str] = set()
        self._children: dict[str, workflow.ChildWorkflowHandle[WaveInput, WaveOutcome]] = {}
        self._worker_destinations: asyncio.Future[NotifyDestinationsResult] | None = None
        self._visible: tuple[str, tuple[str, ...]] | None = None  # search attributes last set
        self._notifications_sent = 0
        self._notifications_pending = 0
        # Who may decide what: the organisation policy's answer for this release, from its
        # first read on (until then no one); only signed decisions count.
        self._policy: Policy | None = None
        self._policy_read_at: datetime | None = None  # workflow time of the last read
        self._roster = Roster.nobody(input.plan)
        self._refusals: dict[str, int] = {}  # wave ("" for the release) -> refusals recorded
        # Resource locks taken or waited for (digests), and those granted by signal.
        self._locks: list[str] = []
        self._lock_answers: dict[str, LockAnswer] = {}
        self._preflight_passed_at: datetime | None = None  # workflow time
        self._status.plan_digest = plan_digest(input.plan)

    # --- the release -------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: ReleaseInput) -> ReleaseResult:
        """Run every wave as its predecessors finish, then roll back if the release stops."""
        plan = self._plan
        self._status.started_at = workflow.now()
        self._event(
            "started",
            f"release {plan.id} of {plan.application} {plan.version} started",
            actor=plan.requested_by,
        )
        metrics.release_started(plan.application)
        self._refresh()
        ended: str | None = None  # what the "finished" event adds to the outcome
        try:
            # Nothing changes until the signed submission checks out against the policy, the
            # release holds the lock of every resource it changes and AWS has every one.
            workflow.deprecate_patch(LOCAL_READS)
            refused = await self._trust_submission(input.submission)
            if refused is None:
                refused = await self._take_locks()
            if refused is None and self._stopping is None:
                refused = await self._preflight()
            if refused is not None:
                self._refuse_start(refused)  # it ends failed, having changed nothing
                final = ReleasePhase.FAILED
            else:
                await asyncio.gather(*(self._run_wave(w) for w in plan.waves))
                if self._rollback_requested:
                    await self._rollback(self._saga)
                final = final_phase(self._status, self._stopping)
                if final == ReleasePhase.ROLLED_BACK and changed_nothing(self._status, self._saga):
                    # A wave stopped before it changed anything: nothing to roll back.
                    final = ReleasePhase.FAILED
                    ended = "nothing was changed, so nothing was rolled back"
        except asyncio.CancelledError:
            # Cancelling the workflow (Temporal UI/CLI) rolls back what it changed: once
            # the cancellation has been delivered here, new activities run normally.
            self._event("cancel_requested", "release cancelled; rolling back", actor=SYSTEM_ACTOR)
            for w in self._status.waves:
                if w.phase not in WAVE_ENDS:
                    self._set_wave(w, WavePhase.CANCELLED, f"wave {w.name} cancelled")
                # The rollback does not wait for the waves' outcomes: a job still running
                # may have run, and is undone as such.
                for job in jobs_logic.left_running(
                    w.jobs, workflow.now(), "the release was cancelled while it ran"
                ):
                    self._event(
                        "job_outcome_unknown", job.error or "", actor=SYSTEM_ACTOR, wave=w.name
                    )
            await self._rollback(self._saga)
            self._finish(ReleasePhase.CANCELLED)
            await self._release_locks()
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._notifications_delivered()
            raise
        self._finish(final, ended)
        await self._release_locks()
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._notifications_delivered()
        return ReleaseResult(release_id=plan.id, phase=self._status.phase, error=self._status.error)

    async def _run_wave(self, wave: Wave) -> None:
        """One wave's branch: wait for its predecessors, its gate, then deploy it."""
        status = self._status.wave(wave.name)
        preds = [self._status.wave(p) for p in wave.after]
        await workflow.wait_condition(
            lambda: self._stopping is not None or all(p.phase in WAVE_ENDS for p in preds)
        )
        if self._stopping is not None or any(p.phase != WavePhase.COMPLETED for p in preds):
            why = (
                "the release is stopping" if self._stopping else "an earlier wave did not complete"
            )
            self._set_wave(status, WavePhase.SKIPPED, f"wave {wave.name} skipped: {why}")
            return
        if wave.approval is not None:
            await self._read_policy()  # the gate's groups as the policy says now
        status.started_at = workflow.now()
        try:
            if wave.approval is not None:
                await self._await_gate(wave, status)
            await self._deploy(wave, status)
        except StopRelease:
            if status.phase not in WAVE_ENDS:
                self._set_wave(status, WavePhase.CANCELLED, f"wave {wave.name} stopped")
            return
        status.finished_at = workflow.now()

    # --- the approval gate -------------------------------------------------------------------

    async def _await_gate(self, wave: Wave, status: WaveStatus) -> None:
        """Wait until the gate is satisfied; a rejection or a timeout stops the release.

        On timeout a gate with ``on_timeout: escalate`` waits once more for the escalation
        groups, then rejects."""
        gate = wave.approval
        assert gate is not None
        self._set_wave(
            status,
            WavePhase.AWAITING_APPROVAL,
            f"wave {wave.name} awaiting approval from "
            + ", ".join(f"{n} of {g}" for g, n in gate.groups.items()),
        )

        def rejected() -> bool:
            return any(a.decision == "rejected" for a in status.approvals)

        def decided() -> bool:
            return self._stopping is not None or rejected() or not gates.gate_missing(status)

        timeout = gate.timeout
        waiting_since = workflow.now()
        while True:
            status.approval_deadline = workflow.now() + timeout if timeout else None
            self._refresh()
            try:
                await workflow.wait_condition(
                    decided, timeout=timeout, timeout_summary=f"approval of wave {wave.name}"
                )
                break
            except TimeoutError:
                if gate.on_timeout == "escalate" and not status.escalated_to:
                    status.escalated_to = dict(gate.escalate_to)
                    timeout = gate.escalation_timeout or gate.timeout
                    self._event(
                        "approval_escalated",
                        f"wave {wave.name} approval escalated to "
                        + ", ".join(f"{n} of {g}" for g, n in gate.escalate_to.items()),
                        actor=SYSTEM_ACTOR,
                        wave=wave.name,
                    )
                    continue
                self._event(
                    "approval_timeout",
                    f"wave {wave.name} approval timed out; rejecting",
                    actor=SYSTEM_ACTOR,
                    wave=wave.name,
                )
                self._gate_waited(wave, waiting_since, "timed_out")
                self._wave_stops_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
                raise StopRelease from None
        status.approval_deadline = None
        self._gate_waited(
            wave,
            waiting_since,
            "stopped" if self._stopping is not None else "rejected" if rejected() else "approved",
        )
        if self._stopping is not None:
            raise StopRelease
        if rejected():
            self._wave_stops_release(status, ReleasePhase.REJECTED, WavePhase.REJECTED)
            raise StopRelease
        self._event("gate_passed", f"wave {wave.name} approved", actor=SYSTEM_ACTOR, wave=wave.name)

    def _gate_waited(self, wave: Wave, since: datetime, decision: str) -> None:
        """Record how long the gate waited and how it ended (``relman.approval.wait.duration``)."""
        metrics.approval_waited(
            self._plan.application, wave.name, wave.department, decision, workflow.now() - since
        )

    @workflow.update
    async def approve(self, input: DecisionInput) -> DecisionResult:
        """Record an approval of a wave's gate."""
        return await self._decide(input, "approve")

    @approve.validator
    def _validate_approve(self, input: DecisionInput) -> None:
        self._validate_decision(input, "approve")

    @workflow.update
    async def reject(self, input: DecisionInput) -> DecisionResult:
        """Reject a wave: the release stops and (by default) rolls back."""
        return await self._decide(input, "reject")

    @reject.validator
    def _validate_reject(self, input: DecisionInput) -> None:
        self._validate_decision(input, "reject")

    def _gate_refusal(self, input: DecisionInput, action: str) -> str | None:
        return gates.refusal(
            self._roster,
            self._status.waves,
            input.wave,
            input.approver,
            action,
            self._status.finished or self._stopping is not None,
        )

    def _validate_decision(self, input: DecisionInput, action: DecisionAction) -> None:
        self._check_signed(action, input, input.wave, lambda: self._gate_refusal(input, action))

    async def _decide(self, input: DecisionInput, action: DecisionAction) -> DecisionResult:
        await self._authorize(
            action, input, input.approver, input.wave, lambda: self._gate_refusal(input, action)
        )
        decision = "approved" if action == "approve" else "rejected"
        wave = self._status.wave(input.wave)
        groups = gates.approver_groups(
            self._roster, wave.department, gates.gate_groups(wave), input.approver
        )
        wave.approvals.append(
            ApprovalRecord(
                approver=input.approver,
                decision=decision,
                groups=groups,
                at=workflow.now(),
                comment=input.comment,
            )
        )
        self._event(
            decision,
            f"{input.approver} {decision} wave {wave.name} (as {', '.join(groups)})",
            actor=input.approver,
            wave=wave.name,
            comment=input.comment or None,
            **self._evidence(input.signed),
        )
        self._refresh()
        if decision == "rejected":
            return DecisionResult(
                wave=wave.name,
                accepted=True,
                satisfied=False,
                missing={},
                message=f"wave {wave.name} rejected",
            )
        missing = gates.gate_missing(wave)
        return DecisionResult(
            wave=wave.name,
            accepted=True,
            satisfied=not missing,
            missing=missing,
            message="gate satisfied"
            if not missing
            else "still needs " + ", ".join(f"{n} from {g}" for g, n in missing.items()),
        )

    # --- trusted decisions: the policy, signatures, refusals ---------------------------------

    async def _trust_submission(self, submission: SignedDecision | None) -> str | None:
        """Read the organisation policy and verify the requester's signed submission and
        the plan against it; why the release must not start, or None."""
        plan = self._plan
        try:
            await self._read_policy()
        except ApplicationError as err:
            return f"the organisation policy could not be read: {err.message}"
        assert self._policy is not None
        if submission is None or not submission.signature.strip():
            return "unsigned submission: relman starts only releases their requester signed"
        if submission.payload.actor != plan.requested_by:
            return (
                f"requested_by {plan.requested_by!r} is not who signed the submission "
                f"({submission.payload.actor!r})"
            )
        try:
            verify_decision(
                submission,
                self._policy,
                release_id=plan.id,
                plan_digest=self._status.plan_digest or "",
                action="submit",
                wave=None,
                now=workflow.info().start_time,
            )
        except DecisionRefused as refused:
            return f"submission refused: {refused.reason}"
        violations = plan_violations(plan, self._policy)
        if violations:
            return "the organisation policy refuses the plan: " + "; ".join(violations)
        started = self._status.timeline[0]
        started.evidence, started.policy_digest = submission, self._policy.digest
        return None

    def _refuse_start(self, reason: str) -> None:
        self._status.error = f"release {self._plan.id} refused: {reason}; it changed nothing"
        self._event("refused", self._status.error, actor=SYSTEM_ACTOR)

    async def _read_policy(self) -> None:
        """Read the organisation policy again; a new version applies from now on and is
        recorded. Unreadable at the start it raises; later the release keeps the last."""
        known = self._policy.digest if self._policy else None
        try:
            snapshot = await read(
                LOAD_POLICY,
                LoadPolicyInput(known_digest=known),
                PolicySnapshot,
                start_to_close_timeout=POLICY_TIMEOUT,
                retry_policy=POLICY_RETRY,
                summary="read the organisation policy",
            )
        except ActivityError as err:
            if self._policy is None:
                raise ApplicationError(cause(err), type="PolicyUnreadable") from None
            self._event(
                "policy_unreadable",
                f"the organisation policy could not be read ({cause(err)}); "
                f"version {self._policy.version} stays in force",
                actor=SYSTEM_ACTOR,
            )
            return
        self._policy_read_at = workflow.now()
        if snapshot.policy is None or snapshot.digest == known:
            return
        policy = snapshot.policy
        added = [f for f in policy.freezes if self._policy is None or f not in self._policy.freezes]
        self._policy, self._roster = policy, Roster.from_policy(policy, self._plan)
        self._status.policy = PolicyInfo(
            source=snapshot.source, version=policy.version, digest=policy.digest, dev=policy.dev
        )
        self._event(
            "policy",
            f"organisation policy {policy.version} ({policy.digest}) from {snapshot.source}"
            + (" (dev policy)" if policy.dev else ""),
            actor=SYSTEM_ACTOR,
            policy_digest=policy.digest,
        )
        for freeze in added:  # organisation-wide freezes reach running waves too
            self._freeze_waves(freeze)
        self._refresh()

    def _policy_stale(self) -> bool:
        """Whether the policy was read longer ago than POLICY_FRESH_FOR (workflow time)."""
        read = self._policy_read_at
        return read is None or workflow.now() - read > POLICY_FRESH_FOR

    def _org_freezes(self) -> list[Freeze]:
        return list(self._policy.freezes) if self._policy else []

    def _check_signed(
        self,
        action: DecisionAction,
        input: DecisionInput | OperatorInput,
        wave: str | None,
        refusal: Callable[[], str | None],
    ) -> None:
        """Validator part of a decision: it is signed by its actor for exactly this, per
        the policy's keys. Who may decide is checked by the handler, which records a
        refusal; once a wave has many, they are refused here without a record."""
        if self._policy is None:
            raise ValueError(
                f"release {self._plan.id} has not read the organisation policy yet; "
                "try again in a moment"
            )
        try:
            check_decision(
                action,
                input,
                self._policy,
                release_id=self._plan.id,
                plan_digest=self._status.plan_digest or "",
                now=workflow.now(),
            )
        except DecisionRefused as refused:
            raise ValueError(refused.reason) from None
        if self._refusals.get(self._refusal_key(wave), 0) >= REFUSALS_RECORDED:
            reason = refusal()
            if reason:
                raise ValueError(reason)

    async def _authorize(
        self,
        action: DecisionAction,
        input: DecisionInput | OperatorInput,
        actor: str,
        wave: str | None,
        refusal: Callable[[], str | None],
    ) -> None:
        """Handler part of a decision: with the policy as it is now, refuse (recorded in
        the timeline, bounded per wave) if ``actor`` may not do this."""
        await self._read_policy()
        reason = refusal()
        if reason is None:
            return
        key = self._refusal_key(wave)
        wave = key or None
        recorded = self._refusals.get(key, 0) + 1
        self._refusals[key] = recorded
        if recorded <= REFUSALS_RECORDED:
            note = (
                "; further refused attempts here are not recorded"
                if recorded == REFUSALS_RECORDED
                else ""
            )
            self._event(
                "refused_decision",
                f"{action} by {actor} refused: {reason}{note}",
                actor=actor,
                wave=wave,
                **self._evidence(input.signed),
            )
        raise ApplicationError(reason, type=DecisionRefused.__name__, non_retryable=True)

    def _refusal_key(self, wave: str | None) -> str:
        """Refusals are counted per wave of the release, the rest (operator actions, waves
        that do not exist) together: made-up wave names cannot open new counters."""
        return wave if wave is not None and any(w.name == wave for w in self._status.waves) else ""

    def _evidence(self, signed: SignedDecision | None) -> dict[str, object]:
        """The fields that keep a decision's signature with its timeline entry."""
        if signed is None:
            return {}
        return {
            "evidence": signed,
            "policy_digest": self._policy.digest if self._policy else None,
        }

    # --- the deployment ----------------------------------------------------------------------

    async def _deploy(self, wave: Wave, status: WaveStatus) -> None:
        """Run the wave's child until it completes, applying ``on_failure`` to failures."""
        targets = [resolved_target(self._plan, wave, self._plan.target(t)) for t in wave.targets]
        dept = self._plan.departments.get(wave.department)
        start_step, attempt = 0, 0
        skipped: list[str] = []
        while True:
            attempt += 1
            if self._policy_stale():
                await self._read_policy()
            # Started, not yet deploying: the wave may wait for its window or a freeze
            # first; it logs wave_deploying when it starts changing AWS.
            again = f" again (attempt {attempt})" if attempt > 1 else ""
            self._set_wave(
                status, WavePhase.DEPLOYING, f"wave {wave.name} started{again}", kind="wave_started"
            )
            child_input = WaveInput(
                release_id=self._plan.id,
                application=self._plan.application,
                parent_id=workflow.info().workflow_id,
                wave=wave,
                targets=targets,
                skipped=skipped,
                freezes=[*self._status.freezes, *self._org_freezes()],
                snapshots={c.target.name: c.snapshot for c in self._saga if c.wave == wave.name},
                start_step=start_step,
                paused=self._status.paused,
                override_window=wave.name in self._overrides,
                override_freeze=self._overrides.get(wave.name, False),
                alarm_region=dept.region if dept else None,
                alarm_role_arn=dept.role_arn if dept else None,
                alarm_external_id=dept.external_id if dept else None,
                bake_interval=wave.bake_interval,
                preflight=self._wave_preflight(wave, skipped),
                jobs_done=[j.name for j in status.jobs if j.phase == JobPhase.SUCCEEDED],
                fleet_done=fleet_logic.done_instances(status.targets),
            )
            rollout_started = workflow.now()
            outcome = await self._run_child(wave, status, child_input, attempt)
            metrics.wave_rolled_out(
                self._plan.application,
                wave.name,
                wave.department,
                outcome.outcome,
                workflow.now() - rollout_started,
            )
            merge_targets(status, outcome.targets)
            if outcome.jobs:
                status.jobs = jobs_logic.merge_jobs(status.jobs, outcome.jobs)
            self._status.timeline.extend(outcome.events)
            if outcome.outcome != "completed":
                # A wave workflow that ended abnormally (terminated, timed out) mid-job
                # never said how its job ended: it may have run.
                for job in jobs_logic.left_running(
                    status.jobs, workflow.now(), f"wave {wave.name}'s workflow ended while it ran"
                ):
                    self._event(
                        "job_outcome_unknown", job.error or "", actor=SYSTEM_ACTOR, wave=wave.name
                    )
            if outcome.outcome == "completed":
                self._set_wave(status, WavePhase.COMPLETED, f"wave {wave.name} completed")
                return
            if outcome.outcome == "stopped":
                raise StopRelease
            decision = await self._wave_failed(wave, status, outcome.error or "failed")
            if decision is None:
                return
            start_step = outcome.failed_step or 0
            if isinstance(decision, TargetActionInput):
                skipped.append(decision.target)
                self._status.target(decision.target).phase = TargetPhase.SKIPPED

    async def _run_child(
        self, wave: Wave, status: WaveStatus, child_input: WaveInput, attempt: int
    ) -> WaveOutcome:
        """Run one attempt of the wave's child workflow; however it ends, an outcome.

        A child that cannot start (its id is taken), is terminated, times out or fails is
        a failed wave: the wave's ``on_failure`` policy and the saga deal with it, with the
        reason in the timeline. The release already holds every snapshot it recorded."""
        child_id = wave_workflow_id(self._plan.id, wave.name, attempt)
        try:
            handle = await workflow.start_child_workflow(
                WAVE_WORKFLOW,
                child_input,
                result_type=WaveOutcome,
                id=child_id,
                static_summary=f"wave {wave.name} of {self._plan.id}",
            )
            self._children[wave.name] = handle
            try:
                return await handle
            finally:
                del self._children[wave.name]
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
            error = child_failure(child_id, err)
        self._event("wave_workflow_failed", error, actor=SYSTEM_ACTOR, wave=wave.name)
        return WaveOutcome(outcome="failed", failed_step=status.step, error=error)

    async def _wave_failed(
        self, wave: Wave, status: WaveStatus, error: str
    ) -> WaveActionInput | TargetActionInput | None:
        """Apply ``on_failure``; return the operator's retry/skip decision, if any."""
        self._status.error = f"wave {wave.name}: {error}"
        status.error = error
        if wave.on_failure == "rollback_wave":
            self._set_wave(
                status, WavePhase.FAILED, f"wave {wave.name} failed ({error}); rolling it back"
            )
            await self._rollback([c for c in self._saga if c.wave == wave.name])
            self._set_wave(status, WavePhase.ROLLED_BACK, f"wave {wave.name} rolled back")
            return None
        if wave.on_failure == "pause" and self._stopping is None:
            self._failed_waves.add(wave.name)
            self._set_wave(
                status,
                WavePhase.PAUSED,
                f"wave {wave.name} failed and waits for an operator: relman retry, "
                f"rollback or skip-target ({error})",
            )
            await workflow.wait_condition(
                lambda: wave.name in self._decisions or self._stopping is not None
            )
            self._failed_waves.discard(wave.name)
            action, decision = self._decisions.pop(wave.name, ("stop", None))
            if action in ("retry", "skip"):
                # The operator dealt with the failure: neither wave nor release shows it now.
                status.error = None
                if self._status.error == f"wave {wave.name}: {error}":
                    self._status.error = None
                return decision
        self._wave_stops_release(status, ReleasePhase.ROLLED_BACK, WavePhase.FAILED)
        raise StopRelease

    @workflow.signal(name=WAVE_PROGRESS_SIGNAL)
    def wave_progress(self, input: WaveReport) -> None:
        """A wave's live progress and events."""
        wave = self._status.wave(input.wave)
        if wave.phase in WAVE_ENDS:
            return
        progress = input.progress
        wave.phase = progress.phase
        wave.step, wave.percent = progress.step, progress.percent
        wave.next_start, wave.waiting_for = progress.next_start, progress.waiting_for
        merge_targets(wave, progress.targets)
        if progress.jobs:
            wave.jobs = jobs_logic.merge_jobs(wave.jobs, progress.jobs)
        if progress.checks:
            wave.checks = progress.checks
        self._status.timeline.extend(input.events)
        self._refresh()

    @workflow.signal(name=RECORD_SNAPSHOTS_SIGNAL)
    def record_snapshots(self, input: SnapshotsRecorded) -> None:
        """A wave's snapshots, recorded before it changes anything (the saga's log)."""
        for change in input.changes:
            self._saga.append(change)
            self._status.target(change.target.name).before = change.snapshot.display

    # --- the rollback saga -------------------------------------------------------------------

    async def _rollback(self, changes: list[Change]) -> None:
        """Compensate ``changes`` newest first; a permanent failure waits for an operator.

        Waves are restored newest first; a wave's targets, changed side by side, are
        restored side by side, their timeline entries in the saga's order."""
        if not changes:
            return
        self._rollbacks_running += 1
        rollback_started = workflow.now()
        self._status.phase = ReleasePhase.ROLLING_BACK
        self._event(
            "rollback_started", f"rolling back {len(changes)} change(s)", actor=SYSTEM_ACTOR
        )
        self._upsert_visibility()
        cause = self._status.error  # why the release rolls back
        halted: str | None = None  # the error while it waited for an operator
        while True:
            failed = 0
            groups = newest_applied_first(changes, self._status.timeline)
            for group in self._with_jobs(groups, changes):
                if isinstance(group, tuple):
                    failed += not await self._compensate_job(*group)
                    continue
                entries: list[Entry] = []
                restoring = asyncio.gather(*(self._compensate(c, entries.append) for c in group))
                try:
                    restored = await asyncio.shield(restoring)
                except asyncio.CancelledError:
                    # Cancelled mid-rollback: each restore runs to its end, and so does
                    # the rollback.
                    restored = await restoring
                failed += restored.count(False)
                order = {c.target.name: i for i, c in enumerate(group)}
                for kind, message, fields in sorted(
                    entries, key=lambda e: order[e[2]["target"] or ""]
                ):
                    self._event(kind, message, **fields)
            if not failed:
                break
            self._status.phase = ReleasePhase.ROLLBACK_FAILED
            halted = f"rollback of {failed} resource(s) failed; see targets"
            if any(j.phase == JobPhase.ROLLBACK_FAILED for w in self._status.waves for j in w.jobs):
                halted += " and jobs"
            self._status.error = halted
            self._event(
                "rollback_halted",
                f"rollback of {failed} resource(s) failed and waits for an operator: "
                f"relman rollback {self._plan.id} (retry) or relman skip-target",
                actor=SYSTEM_ACTOR,
            )
            self._upsert_visibility()
            self._retry_rollback = False
            await workflow.wait_condition(lambda: self._retry_rollback)
            self._status.phase = ReleasePhase.ROLLING_BACK
        if halted is not None and self._status.error == halted:
            # Failed restores were retried or skipped since: the release's error is again
            # why it rolled back (skipped targets are named when it ends).
            self._status.error = cause
        self._event("rollback_finished", "rollback finished", actor=SYSTEM_ACTOR)
        metrics.rollback_finished(self._plan.application, workflow.now() - rollback_started)
        for name in dict.fromkeys(c.wave for c in changes):
            w = self._status.wave(name)
            if w.phase == WavePhase.COMPLETED and all(
                t.phase in (TargetPhase.ROLLED_BACK, TargetPhase.SKIPPED) for t in w.targets
            ):
                self._set_wave(w, WavePhase.ROLLED_BACK, f"wave {name} rolled back")
        self._rollbacks_running -= 1
        self._refresh()

    def _with_jobs(
        self, groups: list[list[Change]], changes: list[Change]
    ) -> list[jobs_logic.RollbackItem]:
        """The saga's target groups with the succeeded jobs of their waves, newest first."""
        jobs = [
            (w, j)
            for w in dict.fromkeys(c.wave for c in changes)
            for j in jobs_logic.to_compensate(self._status.wave(w).jobs)
        ]
        if not jobs:
            return list(groups)
        return jobs_logic.rollback_order(groups, self._status.timeline, jobs)

    async def _compensate_job(self, wave: str, job: JobStatus) -> bool:
        """Run the compensating job of ``job``; False (the rollback waits for an operator)
        if it fails or the plan gives none — unless the plan says ``compensation: none``."""
        spec = next(j for j in self._plan.wave(wave).jobs if j.name == job.name)
        fields: dict[str, Any] = {"actor": SYSTEM_ACTOR, "wave": wave}
        if job.name in self._rollback_skipped:
            return True
        # A job whose outcome is unknown may have run: it is undone as if it had succeeded.
        unknown = job.outcome_unknown
        if spec.compensation == "none":
            job.phase = JobPhase.COMPENSATED
            kept = "outcome unknown, " if unknown else ""
            self._event(
                "job_kept", f"job {job.name}: {kept}compensation none, left as it is", **fields
            )
            return True
        if spec.compensation is None:
            job.phase = JobPhase.ROLLBACK_FAILED
            job.error = (
                "its outcome is unknown (it may have run) and it has no compensating job: "
                "check it, undo it by hand if it ran, then relman skip-target "
                if unknown
                else "it has no compensating job: undo it by hand, then relman skip-target "
            ) + f"{self._plan.id} --target {job.name}"
            self._event("rollback_failed", f"job {job.name}: {job.error}", **fields)
            return False
        dept = self._plan.departments.get(self._plan.wave(wave).department)
        undo = jobs_logic.resolved(
            spec.compensation,
            dept.region if dept else None,
            dept.role_arn if dept else None,
            dept.external_id if dept else None,
        )
        self._job_undos[job.name] = self._job_undos.get(job.name, 0) + 1
        job.phase, job.error = JobPhase.COMPENSATING, None
        self._event(
            "job_started",
            f"compensating job {undo.name} of {job.name}"
            + (" (its outcome was unknown: it may have run)" if unknown else ""),
            **fields,
        )
        running = workflow.start_activity(
            RUN_JOB,
            JobInput(
                release_id=self._plan.id,
                application=self._plan.application,
                wave=wave,
                job=undo,
                key=jobs_logic.job_key(
                    workflow.info().workflow_id, f"undo{self._job_undos[job.name]}:{undo.name}"
                ),
            ),
            result_type=JobResult,
            start_to_close_timeout=jobs_logic.attempt_timeout(undo),
            heartbeat_timeout=jobs_logic.JOB_HEARTBEAT_TIMEOUT,
            retry_policy=COMPENSATE_RETRY,
            summary=f"compensating job {undo.name} of {job.name}",
        )
        try:
            try:
                result = await asyncio.shield(running)
            except asyncio.CancelledError:
                # Cancelled mid-rollback: the compensating job runs to its end.
                result = await running
        except ActivityError as err:
            result = JobResult(succeeded=False, summary=f"did not finish: {cause(err)}")
        if not result.succeeded:
            job.phase = JobPhase.ROLLBACK_FAILED
            job.error = f"compensating job {undo.name} failed: {result.summary}"
            self._event("rollback_failed", f"job {job.name}: {job.error}", **fields)
            return False
        job.phase = JobPhase.COMPENSATED
        self._event(
            "job_compensated", f"job {job.name} undone by {undo.name}: {result.summary}", **fields
        )
        return True

    async def _compensate(self, change: Change, record: Callable[[Entry], None]) -> bool:
        """Restore one resource; False if it cannot be restored (recorded, not dropped).

        Its timeline entry goes to ``record``."""
        tstatus = self._status.target(change.target.name)
        if tstatus.phase == TargetPhase.ROLLED_BACK or change.target.name in self._rollback_skipped:
            return True
        retrying = tstatus.phase == TargetPhase.ROLLBACK_FAILED
        tstatus.phase = TargetPhase.ROLLING_BACK
        attempt, limit = COMPENSATE_TIMEOUT, COMPENSATE_LIMIT
        fleet = change.target if isinstance(change.target, Ec2FleetTarget) else None
        if fleet is not None:
            # A fleet's restore drains, rolls back and re-registers every batch it changed.
            attempt = fleet_logic.restore_timeout(fleet, tstatus.written)
            limit = attempt + COMPENSATE_LIMIT
        restore = workflow.start_activity(
            COMPENSATE_TARGET,
            CompensateInput(
                release_id=self._plan.id,
                application=self._plan.application,
                target=change.target,
                snapshot=change.snapshot,
                written=tstatus.written,
                force=change.target.name in self._forced,
            ),
            result_type=CompensateResult,
            start_to_close_timeout=attempt,
            schedule_to_close_timeout=limit,
            # The restore heartbeats: a worker that dies in it is replaced in seconds.
            heartbeat_timeout=TARGET_HEARTBEAT_TIMEOUT,
            retry_policy=COMPENSATE_RETRY,
            summary=f"restore {change.snapshot.resource}",
        )
        fields: dict[str, str | None] = {
            "actor": SYSTEM_ACTOR,
            "wave": change.wave,
            "target": change.target.name,
        }
        try:
            try:
                result = await asyncio.shield(restore)
            except asyncio.CancelledError:
                # The release was cancelled in the middle of its rollback: cancelling this
                # compensation would leave the resource half restored, so it runs to its end.
                result = await restore
        except ActivityError as err:
            tstatus.phase = TargetPhase.ROLLBACK_FAILED
            if failure_type(err) == RESOURCE_DRIFTED:
                tstatus.error = (
                    f"{cause(err)}: relman rollback {self._plan.id} --force overwrites it, "
                    f"relman skip-target --target {change.target.name} leaves it as it is"
                )
            else:
                tstatus.error = f"{cause(err)}; it should be restored to {change.snapshot.display}"
            record(("rollback_failed", f"{change.snapshot.resource}: {tstatus.error}", fields))
            return False
        tstatus.phase = TargetPhase.ROLLED_BACK
        if fleet is not None and fleet.rollback != "none":
            fleet_logic.rolled_back(tstatus.instances, tstatus.written)
        if retrying:  # the apply failure it may show stays; the rollback failure is over
            tstatus.error = None
        tstatus.after = result.display
        tstatus.percent = 0
        record(
            (
                "target_restored",
                f"{result.resource} restored to {result.display}"
                + ("" if result.changed else " (it already was)"),
                fields,
            )
        )
        return True

    # --- releases that deploy the same resources ---------------------------------------------

    async def _take_locks(self) -> str | None:
        """Take the lock of every resource the plan changes; why the release must not start,
        or None.

        All locks are asked for at once. If another release holds one, the release is
        refused naming it, or with ``queue: true`` lets go of what it got and then waits in
        line for each lock in key order, so two releases never wait for each other (an
        abort ends the wait)."""
        plan = self._plan
        try:
            found = await read(
                RESOURCE_LOCKS,
                ResourceLocksInput(plan=plan),
                ResourceLocks,
                start_to_close_timeout=LOCK_TIMEOUT,
                retry_policy=RESOURCE_KEYS_RETRY,
                summary="name the resources this release changes",
            )
        except ActivityError as err:
            return f"cannot name the resources it changes, to lock them: {cause(err)}"
        keys = found.keys
        self._locks = [k.digest for k in keys]
        answers = await self._ask_locks(keys, queue=False)
        held = next((a for a in answers if not a.granted), None)
        if held is None:
            return None
        where = next(k.description for k in keys if k.digest == held.digest)
        if not plan.queue:
            return (
                f"{where} is being deployed by running release {held.holder}; submit again "
                "once it has ended, or set `queue: true` to queue behind it"
            )
        await self._release_locks()
        for key in keys:
            [answer] = await self._ask_locks([key], queue=True)
            if answer.granted:
                continue
            self._event(
                "queued",
                f"queued behind {answer.holder}: it holds {key.description}",
                actor=SYSTEM_ACTOR,
            )
            await workflow.wait_condition(
                lambda d=key.digest: self._lock_answers[d].granted or self._stopping is not None  # type: ignore[misc]
            )
            if self._stopping is not None:
                self._event(
                    "dequeued", "left the queue: the release is stopping", actor=SYSTEM_ACTOR
                )
                return None
            self._event("dequeued", f"{key.description} is free; going on", actor=SYSTEM_ACTOR)
        return None

    async def _ask_locks(self, keys: list[LockKey], queue: bool) -> list[LockAnswer]:
        """Ask the locks of ``keys``: each one's answer."""
        found = await workflow.execute_activity(
            REQUEST_LOCKS,
            RequestLocksInput(release_id=self._plan.id, keys=keys, queue=queue),
            result_type=LockAnswers,
            start_to_close_timeout=LOCK_TIMEOUT,
            heartbeat_timeout=LOCK_HEARTBEAT_TIMEOUT,
            retry_policy=LOCK_RETRY,
            summary=f"ask for {len(keys)} resource lock(s)",
        )
        for answer in found.answers:
            self._lock_answers[answer.digest] = answer
        return found.answers

    async def _preflight(self) -> str | None:
        """The plan's AWS preflight: every problem found, as the refusal; or None."""
        check = preflight_input(self._plan)
        try:
            result = await read(
                PREFLIGHT,
                check,
                PreflightResult,
                start_to_close_timeout=preflight_timeout(check),
                retry_policy=RESOURCE_KEYS_RETRY,
                summary="preflight: check every resource and alarm of the plan",
            )
        except ActivityError as err:
            return f"the AWS preflight could not run: {cause(err)}"
        if result.problems:
            listed = "; ".join(str(problem) for problem in result.problems)
            return f"the AWS preflight found {len(result.problems)} problem(s): {listed}"
        self._event(
            "preflight",
            f"AWS preflight passed: {result.checked} target(s) and alarm set(s) checked",
            actor=SYSTEM_ACTOR,
        )
        self._preflight_passed_at = workflow.now()
        return None

    def _wave_preflight(self, wave: Wave, skipped: list[str]) -> PreflightInput | None:
        """The preflight a wave runs at its start: its targets (but those skipped) and
        alarms; none within PREFLIGHT_FRESH_FOR of the release's own, which checked them."""
        passed = self._preflight_passed_at
        if passed is not None and workflow.now() - passed < PREFLIGHT_FRESH_FOR:
            return None
        check = preflight_input(self._plan, waves=[wave.name])
        check.targets = [t for t in check.targets if t.target.name not in skipped]
        return check

    async def _release_locks(self) -> None:
        """Let every lock this release took (or waited for) go, whatever the end."""
        if not self._locks:
            return
        await workflow.execute_activity(
            RELEASE_LOCKS,
            ReleaseLocksInput(release_id=self._plan.id, digests=self._locks),
            start_to_close_timeout=LOCK_TIMEOUT,
            retry_policy=LOCK_RETRY,
            summary=f"let {len(self._locks)} resource lock(s) go",
        )

    @workflow.signal(name=LOCK_ANSWER_SIGNAL)
    def lock_answer(self, input: LockAnswer) -> None:
        """A lock's answer: granted, or held by another (and the place in line)."""
        self._lock_answers[input.digest] = input

    # --- operator controls -------------------------------------------------------------------

    @workflow.update
    async def pause(self, input: OperatorInput) -> OperatorResult:
        """Stop every wave at its next safe point (between target steps)."""
        await self._authorize_operator("pause", input, "pause")
        self._status.paused = True
        self._operator_event("paused", "release paused", input)
        await self._signal_waves("pause", input)
        return OperatorResult(message="release paused at the next safe point")

    @pause.validator
    def _validate_pause(self, input: OperatorInput) -> None:
        self._validate_operator("pause", input, "pause")
        if self._status.paused:
            raise ValueError(f"release {self._plan.id} is already paused")

    @workflow.update
    async def resume(self, input: OperatorInput) -> OperatorResult:
        """Go on after a pause."""
        await self._authorize_operator("resume", input, "resume")
        self._status.paused = False
        self._operator_event("resumed", "release resumed", input)
        await self._signal_waves("resume", input)
        return OperatorResult(message="release resumed")

    @resume.validator
    def _validate_resume(self, input: OperatorInput) -> None:
        self._validate_operator("resume", input, "resume")
        if not self._status.paused:
            raise ValueError(f"release {self._plan.id} is not paused")

    @workflow.update
    async def abort(self, input: OperatorInput) -> OperatorResult:
        """Stop the release and roll back everything it changed; it ends ``cancelled``."""
        await self._authorize_operator("abort", input, "abort")
        self._operator_event("aborted", "release aborted; rolling back", input)
        self._stop_release(ReleasePhase.CANCELLED)
        await self._signal_waves("stop", input)
        return OperatorResult(message="release aborting: rolling back what it changed")

    @abort.validator
    def _validate_abort(self, input: OperatorInput) -> None:
        self._validate_operator("abort", input, "abort")
        if self._stopping is not None:
            raise ValueError(f"release {self._plan.id} is already stopping")

    @workflow.update
    async def add_freeze(self, input: FreezeInput) -> OperatorResult:
        """Add a freeze; running waits respect it from now on."""
        await self._authorize_operator("freeze_add", input, "add a freeze to")
        self._status.freezes.append(input.freeze)
        self._operator_event(
            "freeze_added",
            f"freeze {input.freeze.start.isoformat()} -> {input.freeze.end.isoformat()}: "
            f"{input.freeze.reason}",
            input,
        )
        await self._signal_waves("add_freeze", input)
        return OperatorResult(message="freeze added")

    @add_freeze.validator
    def _validate_add_freeze(self, input: FreezeInput) -> None:
        self._validate_operator("freeze_add", input, "add a freeze to")

    @workflow.update
    async def override_window(self, input: OverrideInput) -> OperatorResult:
        """Let a wave deploy outside its window (and a freeze only if included)."""
        await self._authorize_operator(
            "override_window", input, "override a window", override=True, wave=input.wave
        )
        self._overrides[input.wave] = self._overrides.get(input.wave, False) or (
            input.include_freeze
        )
        scope = "window and freezes" if input.include_freeze else "window"
        self._operator_event(
            "window_overridden", f"wave {input.wave}: {scope} overridden", input, input.wave
        )
        if input.wave in self._children:
            try:
                await self._children[input.wave].signal("override_window", input)
            except Exception:  # the wave ended meanwhile; its next attempt reads _overrides
                workflow.logger.info("wave %s ended before it took override_window", input.wave)
        return OperatorResult(message=f"wave {input.wave} may start outside its {scope}")

    @override_window.validator
    def _validate_override_window(self, input: OverrideInput) -> None:
        self._validate_operator(
            "override_window", input, "override a window", override=True, wave=input.wave
        )
        wave = self._wave_status(input.wave)
        if wave.phase in WAVE_ENDS:
            raise ValueError(f"wave {input.wave!r} has already ended ({wave.phase.value})")

    @workflow.update
    async def retry(self, input: WaveActionInput) -> OperatorResult:
        """Retry a wave paused on failure from the step that failed."""
        await self._authorize_operator("retry", input, "retry", wave=input.wave)
        self._decisions[input.wave] = ("retry", input)
        self._operator_event("retry", f"wave {input.wave}: retry", input, input.wave)
        return OperatorResult(message=f"wave {input.wave} retrying")

    @retry.validator
    def _validate_retry(self, input: WaveActionInput) -> None:
        self._validate_operator("retry", input, "retry", wave=input.wave)
        self._validate_guided(input.wave)
        unknown = [
            j.name for j in self._wave_status(input.wave).jobs if j.phase == JobPhase.UNKNOWN
        ]
        if unknown and not input.force:
            # A retry starts the job again: a migration that may have run must not run twice
            # unless someone checked it.
            raise ValueError(
                f"wave {input.wave!r}: the outcome of job {', '.join(unknown)} is unknown "
                "(it may have run) and a retry runs it again: check it, then retry with "
                "--force, or roll back"
            )

    @workflow.update
    async def rollback(self, input: WaveActionInput) -> OperatorResult:
        """Roll back the release: of a wave paused on failure, or retry a failed rollback."""
        await self._authorize_operator("rollback", input, "roll back", wave=input.wave)
        if self._status.phase == ReleasePhase.ROLLBACK_FAILED:
            self._retry_rollback = True
            failed = [
                t.name for w in self._status.waves for t in w.targets
                if t.phase == TargetPhase.ROLLBACK_FAILED
            ]  # fmt: skip
            if input.force:
                self._forced.update(failed)
            self._operator_event(
                "rollback_retry",
                "retrying the failed rollback"
                + (f", overwriting {', '.join(failed)} as they are now" if input.force else ""),
                input,
            )
            return OperatorResult(
                message="retrying the rollback" + (" (forced)" if input.force else "")
            )
        self._decisions[input.wave] = ("rollback", input)
        self._operator_event("rollback", f"wave {input.wave}: roll back", input, input.wave)
        return OperatorResult(message="rolling back the release")

    @rollback.validator
    def _validate_rollback(self, input: WaveActionInput) -> None:
        self._validate_operator("rollback", input, "roll back", wave=input.wave)
        if self._status.phase != ReleasePhase.ROLLBACK_FAILED:
            self._validate_guided(input.wave)

    @workflow.update
    async def skip_target(self, input: TargetActionInput) -> OperatorResult:
        """Skip a target that failed (its wave goes on) or whose rollback cannot succeed."""
        undone = self._job_rollback_failed(input.target)
        if undone is not None:  # a job step whose undo failed (or that has none)
            await self._authorize_operator("skip_target", input, "skip a job of", wave=undone[0])
            undone[1].phase = JobPhase.COMPENSATED
            self._rollback_skipped.add(input.target)
            self._operator_event(
                "rollback_skipped",
                f"job {input.target}: rollback skipped; undone by hand ({undone[1].error})",
                input,
            )
            self._retry_rollback = True
            return OperatorResult(message=f"rollback of job {input.target} skipped")
        wave = wave_of_target(self._status, input.target)
        assert wave is not None  # the validator made sure
        await self._authorize_operator("skip_target", input, "skip a target of", wave=wave.name)
        target = self._status.target(input.target)
        if target.phase == TargetPhase.ROLLBACK_FAILED:
            target.phase = TargetPhase.SKIPPED
            self._rollback_skipped.add(input.target)
            self._operator_event(
                "rollback_skipped",
                f"{target.resource}: rollback skipped; restore it by hand ({target.error})",
                input,
            )
            self._retry_rollback = True
            return OperatorResult(message=f"rollback of {input.target} skipped")
        self._decisions[wave.name] = ("skip", input)
        self._operator_event("target_skipped", f"{target.resource} skipped", input, wave.name)
        return OperatorResult(message=f"target {input.target} skipped; wave {wave.name} goes on")

    def _job_rollback_failed(self, name: str) -> tuple[str, JobStatus] | None:
        return next(
            (
                (w.name, j)
                for w in self._status.waves
                for j in w.jobs
                if j.name == name and j.phase == JobPhase.ROLLBACK_FAILED
            ),
            None,
        )

    @skip_target.validator
    def _validate_skip_target(self, input: TargetActionInput) -> None:
        undone = self._job_rollback_failed(input.target)
        if undone is not None:
            self._validate_operator("skip_target", input, "skip a job of", wave=undone[0])
            return
        wave = wave_of_target(self._status, input.target)
        if wave is None:
            raise ValueError(f"release {self._plan.id} has no target {input.target!r}")
        self._validate_operator("skip_target", input, "skip a target of", wave=wave.name)
        if self._status.target(input.target).phase == TargetPhase.ROLLBACK_FAILED:
            return
        if wave.phase != WavePhase.PAUSED or wave.name not in self._failed_waves:
            raise ValueError(
                f"target {input.target!r} can be skipped only while its wave is paused on a "
                "failure or its rollback failed"
            )

    def _validate_guided(self, wave_name: str) -> None:
        wave = self._wave_status(wave_name)
        if wave.phase != WavePhase.PAUSED or wave_name not in self._failed_waves:
            raise ValueError(f"wave {wave_name!r} is not paused on a failure")

    def _operator_refusal(
        self, input: OperatorInput, doing: str, override: bool = False
    ) -> str | None:
        ended = self._status.phase.value if self._status.phase in FINAL_PHASES else None
        return operator_refusal(self._roster, ended, input.actor, doing, override)

    def _validate_operator(
        self,
        action: DecisionAction,
        input: OperatorInput,
        doing: str,
        override: bool = False,
        wave: str | None = None,
    ) -> None:
        """An operator action: its reason, signature and (see _check_signed) its actor."""
        self._check_signed(
            action, input, wave, lambda: self._operator_refusal(input, doing, override)
        )
        if not input.reason.strip():
            raise ValueError(f"{doing} needs a reason (--reason)")

    async def _authorize_operator(
        self,
        action: DecisionAction,
        input: OperatorInput,
        doing: str,
        override: bool = False,
        wave: str | None = None,
    ) -> None:
        await self._authorize(
            action, input, input.actor, wave, lambda: self._operator_refusal(input, doing, override)
        )

    def _freeze_waves(self, freeze: Freeze) -> None:
        """An organisation-wide freeze the policy added: running waves respect it now."""
        for handle in self._children.values():
            asyncio.ensure_future(
                handle.signal(
                    "add_freeze",
                    FreezeInput(actor=SYSTEM_ACTOR, reason="organisation policy", freeze=freeze),
                )
            )

    async def _signal_waves(self, signal: str, input: OperatorInput) -> None:
        """Pass an operator's action on to the running waves.

        A wave that has just ended cannot take the signal, and needs none: the release's
        own state (paused, stopping, freezes) goes into the wave's next attempt, if any.
        The action stands either way, so the operator's Update gets one consistent result.
        """
        for name, handle in list(self._children.items()):
            try:
                await handle.signal(signal, input)
            except Exception:
                workflow.logger.info("wave %s ended before it took %s", name, signal)

    # --- what anyone may ask -----------------------------------------------------------------

    @workflow.query
    def status(self, request: StatusRequest | None = None) -> ReleaseStatus:
        """The release's phase, waves, targets, pending approvals and timeline (or, when
        ``request`` says so, its latest events only)."""
        if request is None or request.timeline_tail is None:
            return self._status
        events = self._status.timeline
        latest = events[len(events) - request.timeline_tail :] if request.timeline_tail else []
        return self._status.model_copy(update={"timeline": latest, "timeline_total": len(events)})

    @workflow.query
    def timeline(self, request: TimelineRequest) -> TimelinePage:
        """A page of the timeline, oldest first: the audit trail of any size, in parts."""
        events = self._status.timeline
        return TimelinePage(
            events=events[request.offset : request.offset + request.limit], total=len(events)
        )

    # --- how the release ends ----------------------------------------------------------------

    def _stop_release(self, end: ReleasePhase) -> None:
        """Head for ``end``: every running wave stops at its next safe point."""
        if self._stopping is not None:
            return
        self._stopping = end
        self._rollback_requested = end != ReleasePhase.REJECTED or (
            self._plan.on_rejection == "rollback"
        )
        for handle in self._children.values():
            # Waves stop at their next safe point and report what they changed.
            asyncio.ensure_future(handle.signal("stop", OperatorInput(actor=SYSTEM_ACTOR)))

    def _wave_stops_release(
        self, status: WaveStatus, end: ReleasePhase, wave_end: WavePhase
    ) -> None:
        status.finished_at = workflow.now()
        # The timeline (relman history) says why, as status does.
        why = f": {status.error}" if status.error and wave_end == WavePhase.FAILED else ""
        self._set_wave(status, wave_end, f"wave {status.name} {wave_end.value}{why}")
        self._stop_release(end)

    def _finish(self, phase: ReleasePhase, note: str | None = None) -> None:
        skipped = sorted(self._rollback_skipped)
        if skipped:
            if phase == ReleasePhase.ROLLED_BACK:
                phase = ReleasePhase.ROLLED_BACK_WITH_SKIPS
            left = (
                f"not restored by relman (an operator skipped their rollback; check them "
                f"by hand): {', '.join(skipped)}"
            )
            error = self._status.error
            self._status.error = f"{error}; {left}" if error else left
        self._status.phase = phase
        self._status.finished_at = workflow.now()
        self._status.pending_approvals = []
        ended = f"release ended {phase.value}" + (f": {note}" if note else "")
        self._event("finished", ended, actor=SYSTEM_ACTOR)
        metrics.release_finished(self._plan.application, phase.value)
        # The Web UI's "Current Details" of the ended release: its outcome and cause.
        workflow.set_current_details(current_details(self._status))
        self._upsert_visibility()

    # --- status, timeline, visibility and notifications --------------------------------------

    def _wave_status(self, name: str) -> WaveStatus:
        wave = next((w for w in self._status.waves if w.name == name), None)
        if wave is None:
            names = ", ".join(w.name for w in self._status.waves)
            raise ValueError(f"release {self._plan.id} has no wave {name!r} (waves: {names})")
        return wave

    def _set_wave(
        self, status: WaveStatus, phase: WavePhase, message: str, kind: str | None = None
    ) -> None:
        status.phase = phase
        if phase in WAVE_ENDS:  # what it was doing or waiting for is over
            status.waiting_for, status.next_start = None, None
        kind = kind or f"wave_{phase.value}"
        self._event(kind, message, actor=SYSTEM_ACTOR, wave=status.name)
        self._refresh()

    def _operator_event(
        self, kind: str, message: str, input: OperatorInput, wave: str | None = None
    ) -> None:
        self._event(
            kind,
            message,
            actor=input.actor,
            wave=wave,
            comment=input.reason or None,
            **self._evidence(input.signed),
        )
        self._refresh()

    def _event(self, kind: str, message: str, **fields: Any) -> None:
        entry = TimelineEvent(at=workflow.now(), kind=kind, message=message, **fields)
        self._status.timeline.append(entry)
        self._notify(entry)

    def _refresh(self) -> None:
        """Recompute the release phase and pending approvals from the waves."""
        if self._status.phase in FINAL_PHASES:
            return
        self._status.pending_approvals = pending_approvals(self._roster, self._status)
        if not self._rollbacks_running:
            self._status.phase = active_phase(self._status, self._status.paused)
        workflow.set_current_details(current_details(self._status))
        self._upsert_visibility()

    def _upsert_visibility(self) -> None:
        """Keep ``RelmanPhase`` and ``RelmanApprovers`` current, sending only changes (each
        upsert is a command and a history event)."""
        # A release started without relman's search attributes (the time-skipping test
        # server has none registered) would fail its task upserting them.
        if workflow.info().typed_search_attributes.get(SA_PHASE) is None:
            return
        approvers = sorted(
            {a for p in self._status.pending_approvals for a in p.eligible_approvers}
        )
        visible = (self._status.phase.value, tuple(approvers))
        if visible == self._visible:
            return
        self._visible = visible
        workflow.upsert_search_attributes(
            [SA_PHASE.value_set(self._status.phase.value), SA_APPROVERS.value_set(approvers)]
        )

    def _notify(self, entry: TimelineEvent) -> None:
        """Send a timeline entry as a notification if it is one, without waiting for it."""
        if notified_event(self._plan, entry.kind) is None:
            return
        self._notifications_sent += 1
        self._notifications_pending += 1
        notification = notification_for(
            self._plan, self._roster, self._status, self._notifications_sent, entry
        )
        # Fire and forget: the release goes on while the notification is delivered (and
        # retried); _notifications_delivered() keeps the workflow open until it has been.
        asyncio.ensure_future(self._deliver(notification))

    async def _deliver(self, notification: Notification) -> None:
        if self._plan.notifications is None and not await self._worker_notifies():
            self._notifications_pending -= 1
            return
        try:
            await workflow.execute_activity(
                NOTIFY,
                NotifyInput(notification=notification, destinations=self._plan.notifications),
                result_type=NotifyResult,
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
                summary=f"notify {notification.event}"
                + (f" of wave {notification.wave}" if notification.wave else ""),
            )
        except ActivityError as err:
            self._event(
                "notification_failed",
                f"{notification.event} notification not delivered: {cause(err)}",
                actor=SYSTEM_ACTOR,
                wave=notification.wave,
            )
        finally:
            self._notifications_pending -= 1

    async def _worker_notifies(self) -> bool:
        """Whether the worker has destinations of its own, asked once per release.

        A plan without a ``notifications`` section sends only where the worker's
        configuration says; when that is nowhere, the release schedules no notify activity
        at all. A local activity: one marker in the history, no task-queue round trip.
        """
        if self._worker_destinations is None:
            self._worker_destinations = asyncio.ensure_future(
                workflow.execute_local_activity(
                    NOTIFY_DESTINATIONS,
                    NotifyDestinationsInput(release_id=self._plan.id),
                    result_type=NotifyDestinationsResult,
                    start_to_close_timeout=NOTIFY_DESTINATIONS_TIMEOUT,
                )
            )
        return (await self._worker_destinations).configured

    async def _notifications_delivered(self) -> None:
        """Wait until every notification started is delivered or recorded as failed."""
        await workflow.wait_condition(lambda: not self._notifications_pending)
