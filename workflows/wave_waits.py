"""A wave's waits: bakes watching its alarms, and safe points (pause, stop, window, freeze)."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # `from workflows import windows` would load the module inside the sandbox (the package
    # `workflows` already lives there as this module's parent), where ZoneInfo is a
    # restricted proxy that datetime refuses; naming the module in full passes it through.
    import workflows.windows as windows
    from models.durations import format_duration
    from models.messages import (
        WATCH_ALARMS,
        BakeInput,
        BakeResult,
    )
    from models.status import WavePhase
    from workflows.wave_base import (
        APPLY_RETRY,
        BAKE_HEARTBEATS_MISSED,
        BAKE_MARGIN,
        BAKE_WAITS_FOR_CANCEL,
        WaveBase,
        WaveFailed,
        WaveStopped,
        failure_of,
        firing_names,
        wait_or_timeout,
    )


class WaveWaits(WaveBase):
    """Bake at a traffic step; wait at a safe point until the wave may go on."""

    async def _bake(self, percent: int) -> None:
        wave = self._input.wave
        self._progress.phase = WavePhase.BAKING
        self._progress.waiting_for = f"baking {format_duration(wave.bake)} at {percent}%"
        await self._report()
        if not wave.alarms:
            # Nothing to watch: a durable timer (skipped by time-skipping tests).
            await wait_or_timeout(lambda: self._stop, wave.bake)
        else:
            interval = self._input.bake_interval
            # A cancelled wave ends once its bake has stopped polling (within a poll), so
            # no bake outlives its wave.
            cancellation = (
                workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
                if workflow.patched(BAKE_WAITS_FOR_CANCEL)
                else workflow.ActivityCancellationType.TRY_CANCEL
            )
            try:
                result = await workflow.execute_activity(
                    WATCH_ALARMS,
                    BakeInput(
                        **self._alarm_input().model_dump(), duration=wave.bake, interval=interval
                    ),
                    result_type=BakeResult,
                    start_to_close_timeout=wave.bake + BAKE_MARGIN,
                    heartbeat_timeout=interval * BAKE_HEARTBEATS_MISSED,
                    retry_policy=APPLY_RETRY,
                    cancellation_type=cancellation,
                    summary=f"bake {wave.name} at {percent}% watching {', '.join(wave.alarms)}",
                )
            except ActivityError as err:
                raise failure_of(err) from None
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
                await self._report()
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
            # The freeze in force now, or the one whose end is the start it put off.
            freeze = windows.active_freeze(freezes, now) or next(
                (f for f in freezes if f.end == start), None
            )
            reason = (
                f"freeze: {freeze.reason}"
                if freeze
                else (f"window {windows.describe_window(wave.window)}" if wave.window else "window")
            )
            self._progress.phase = WavePhase.WAITING_FOR_WINDOW
            self._progress.next_start = start
            self._progress.waiting_for = f"{reason}; next start {start.isoformat()}"
            self._event(
                "waiting_for_window", f"wave {wave.name} waits until {start.isoformat()} ({reason})"
            )
            await self._report()
            wake = self._wake

            def woken(wake: int = wake) -> bool:
                return self._wake != wake

            await wait_or_timeout(woken, start - now, reason)
