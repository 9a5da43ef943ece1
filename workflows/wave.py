"""WaveWorkflow: one wave's deployment, run as a child of its release.

A child per wave keeps each release's history bounded however many waves and targets it has:
the release records gates and the saga; each wave records its own snapshots, traffic steps
and bakes. Before the first change the wave snapshots all its targets and signals them to the
release, so the release can roll back even if this child is cancelled or terminated.

This module holds the workflow's state, signals, query and run; what the wave does step by
step is in ``wave_steps.py``, ``wave_waits.py`` and ``wave_base.py``, passed through the
sandbox (this module is imported anew for every wave run; those are loaded once).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.messages import (
        FreezeInput,
        OperatorInput,
        OverrideInput,
        WaveInput,
        WaveOutcome,
        WaveProgress,
        WaveReport,
    )
    from models.status import TargetPhase, TargetStatus, TimelineEvent, WavePhase

    # The wave's steps are deterministic workflow code without module state: passed through,
    # they are loaded once per worker, not once for every wave run in the sandbox.
    from workflows.wave_steps import WaveSteps


@workflow.defn
class WaveWorkflow(WaveSteps):
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
        )
        self._events: list[TimelineEvent] = []
        self._parent = workflow.get_external_workflow_handle(input.parent_id)
        self._reports: list[asyncio.Future[None]] = []
        # Progress-in-order: the report waiting to be sent, and the task sending reports.
        self._unsent: WaveReport | None = None
        self._sender: asyncio.Future[None] | None = None

    # --- signals from the release and the query ----------------------------------------------

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

    # --- the deployment ----------------------------------------------------------------------

    @workflow.run
    async def run(self, input: WaveInput) -> WaveOutcome:
        """Deploy; never fails the workflow: the outcome tells the release what happened."""
        outcome = await self._deploy(input)
        # The release must have every report before it reads the outcome.
        if self._sender is not None:
            await self._sender
        if self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)
        return outcome
