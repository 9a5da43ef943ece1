"""The activities a release runs against its targets, dispatched by target kind."""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients, acting_for
from activities.errors import classified, permanent_error
from activities.targets import build_handlers
from activities.targets.base import ResourceDrifted, TargetHandler
from models.messages import (
    APPLY_TARGET,
    APPLY_TARGETS,
    BATCH_FAN_OUT,
    COMPENSATE_TARGET,
    SNAPSHOT_TARGET,
    SNAPSHOT_TARGETS,
    ApplyInput,
    ApplyResult,
    ApplyStepInput,
    ApplyStepResult,
    BatchProgress,
    CompensateInput,
    CompensateResult,
    Snapshot,
    SnapshotsResult,
    TargetInput,
    TargetsInput,
)
from models.plan import Target

# The targets of one batch activity are worked on side by side, on at most this many threads
# (shared by every batch the worker runs).
FAN_OUT_THREADS = BATCH_FAN_OUT
# A batch (and a restore) heartbeats this often while its targets are worked on, with the
# targets done so far: the workflow's heartbeat timeout notices a worker that died mid-batch
# in seconds, and the retry on another worker goes on from there. (The SDK sends at most
# one heartbeat per 80 % of the heartbeat timeout, with the latest details.)
HEARTBEAT_EVERY = 1.0

Item = TypeVar("Item")
R = TypeVar("R", bound=BaseModel)


class UnsupportedTargetKind(Exception):
    """A plan names a target kind this worker cannot execute."""


class TargetsFailed(Exception):
    """Some targets of a batch failed in a way a retry may fix; the batch is retried."""


class TargetActivities:
    """Snapshot, apply and compensate targets; boto3 clients come from the worker."""

    def __init__(self, aws: AwsClients):
        self.handlers = build_handlers(aws)
        self._fan_out_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=FAN_OUT_THREADS, thread_name_prefix="relman-target"
        )

    def _handler(self, target: Target) -> TargetHandler:
        handler = self.handlers.get(target.kind)
        if handler is None:
            raise ApplicationError(
                f"target {target.name!r}: kind {target.kind!r} is not supported by this worker",
                type=UnsupportedTargetKind.__name__,
                non_retryable=True,
            )
        return handler

    @activity.defn(name=SNAPSHOT_TARGET)
    def snapshot_target(self, input: TargetInput) -> Snapshot:
        """Record the target's current state (read-only)."""
        with acting_for(input.release_id, input.application), classified(input.target.resource):
            return self._handler(input.target).snapshot(input.target)

    @activity.defn(name=APPLY_TARGET)
    def apply_target(self, input: ApplyInput) -> ApplyResult:
        """Make the target what the release wants; a no-op if it already is."""
        with acting_for(input.release_id, input.application), classified(input.target.resource):
            result = self._handler(input.target).apply(
                input.target, input.snapshot, input.percent, input.written
            )
        activity.logger.info(
            "applied %s (%s)", result.resource, "changed" if result.changed else "unchanged"
        )
        return result

    @activity.defn(name=SNAPSHOT_TARGETS)
    def snapshot_targets(self, input: TargetsInput) -> SnapshotsResult:
        """Snapshot a wave's targets side by side (read-only); a retried attempt keeps the
        snapshots the last one heartbeated (taken before anything changed)."""
        with acting_for(input.release_id, input.application):
            snapshots, errors, _ = self._each(
                BatchProgress(what="snapshot", total=len(input.targets)),
                Snapshot,
                input.targets,
                lambda t: t,
                lambda t: self._handler(t).snapshot(t),
                input.final_attempt,
            )
        return SnapshotsResult(snapshots=snapshots, errors=errors)

    @activity.defn(name=APPLY_TARGETS)
    def apply_targets(self, input: ApplyStepInput) -> ApplyStepResult:
        """Apply one traffic step to a wave's targets side by side; each is a no-op if its
        target already is what the release wants, so a retried batch writes nothing twice,
        and the targets the last attempt heartbeated as done are reported without calling
        AWS. A target someone else changed since the previous step is in ``errors`` and in
        ``drifted``."""
        release = (input.items[0].release_id, input.items[0].application) if input.items else ()
        percent = input.items[0].percent if input.items else None
        with acting_for(*release):  # a batch is one release's targets
            results, errors, drifted = self._each(
                BatchProgress(what="apply", total=len(input.items), percent=percent),
                ApplyResult,
                input.items,
                lambda i: i.target,
                lambda i: self._handler(i.target).apply(i.target, i.snapshot, i.percent, i.written),
                input.final_attempt,
            )
        for result in results.values():
            activity.logger.info(
                "applied %s (%s)", result.resource, "changed" if result.changed else "unchanged"
            )
        return ApplyStepResult(results=results, errors=errors, drifted=drifted)

    def _each(
        self,
        progress: BatchProgress,
        result_type: type[R],
        items: list[Item],
        target_of: Callable[[Item], Target],
        work: Callable[[Item], R],
        final_attempt: int,
    ) -> tuple[dict[str, R], dict[str, str], dict[str, dict[str, Any]]]:
        """``work`` on every item side by side: results, errors and drifts by target name.

        A failure that retrying cannot fix is that target's error at once; a
        ``ResourceDrifted`` one (never retried) is also in the drifts, with its details.
        When the others failed only transiently (throttling, a timeout), the whole batch is
        retried by Temporal, until ``final_attempt``, where they are reported as errors too.

        The activity heartbeats ``progress`` while it waits: every target done so far, with
        its result. A retried attempt (the worker died, the batch failed transiently) takes
        those results from the last heartbeat and works on the other targets only.
        Cancelled (the wave is stopping), it still waits for every call in flight before it
        reports the cancellation, so the workflow (which waits for that report) never
        compensates while a write of this attempt may still land.
        """
        done = self._done_before(progress, result_type, {target_of(i).name for i in items})
        progress.results.update(
            {name: result.model_dump(mode="json") for name, result in done.items()}
        )
        todo = [item for item in items if target_of(item).name not in done]
        # Each thread runs in a copy of this activity's context: the trace span AWS calls
        # belong to, the activity's logger.
        futures = {
            self._fan_out_pool.submit(contextvars.copy_context().run, work, item): item
            for item in todo
        }
        with activity.shield_thread_cancel_exception():
            pending = set(futures)
            while pending:
                finished, pending = concurrent.futures.wait(pending, timeout=HEARTBEAT_EVERY)
                for future in finished:
                    if future.exception() is None:
                        name = target_of(futures[future]).name
                        progress.results[name] = future.result().model_dump(mode="json")
                # A plain JSON dict reads back the same under any data converter.
                activity.heartbeat(progress.model_dump(mode="json"))
        results: dict[str, R] = {}
        permanent: dict[str, str] = {}
        transient: dict[str, str] = {}
        drifted: dict[str, dict[str, Any]] = {}
        outcomes = {target_of(item).name: future for future, item in futures.items()}
        for item in items:
            target = target_of(item)
            key = target.name
            if key in done:
                results[key] = done[key]
                continue
            try:
                results[key] = outcomes[key].result()
            except ApplicationError as exc:
                (permanent if exc.non_retryable else transient)[key] = exc.message
                if exc.type == ResourceDrifted.__name__:
                    drifted[key] = dict(exc.details[0]) if exc.details else {}
            except Exception as exc:
                final = permanent_error(exc, target.resource)
                if final is not None:  # invalid parameters, no credentials, an odd snapshot
                    permanent[key] = final.message
                else:  # botocore's connection errors, timeouts...
                    transient[key] = str(exc) or type(exc).__name__
        if transient and not permanent and activity.info().attempt < final_attempt:
            failed = "; ".join(f"{key}: {transient[key]}" for key in sorted(transient))
            raise TargetsFailed(
                f"{progress.what} failed for {len(transient)} of {len(items)} target(s), "
                f"retrying: {failed}"
            )
        names = [t.name for t in map(target_of, items) if t.name in permanent | transient]
        return results, {k: permanent.get(k) or transient[k] for k in names}, drifted

    def _done_before(
        self, progress: BatchProgress, result_type: type[R], names: set[str]
    ) -> dict[str, R]:
        """The results of the targets an earlier attempt of this batch heartbeated as done
        (none on a first attempt, or from details this code cannot read)."""
        details = activity.info().heartbeat_details
        if not details:
            return {}
        try:
            last = BatchProgress.model_validate(details[0])
            if last.what != progress.what or not set(last.results) <= names:
                raise ValueError(f"progress of another batch: {last.what}")
            done = {name: result_type.model_validate(r) for name, r in last.results.items()}
        except (ValidationError, ValueError) as exc:
            # E.g. "3 of 42 done", heartbeated by relman before it recorded results.
            activity.logger.info("batch heartbeat not used (%s): working on every target", exc)
            return {}
        activity.logger.info(
            "%s: %d of %d target(s) done by an earlier attempt",
            progress.what,
            len(done),
            len(names),
        )
        return done

    @activity.defn(name=COMPENSATE_TARGET)
    def compensate_target(self, input: CompensateInput) -> CompensateResult:
        """Restore the target to its snapshot; a no-op if it already is.

        Unless ``input.force``, a target someone else changed since relman wrote
        ``input.written`` is left alone: the activity fails with a non-retryable
        ``ApplicationError`` of type ``ResourceDrifted`` (details: target, resource, written,
        current, snapshot).
        """
        with acting_for(input.release_id, input.application), classified(input.target.resource):
            handler = self._handler(input.target)
            result = self._heartbeating(
                lambda: handler.compensate(input.target, input.snapshot, input.written, input.force)
            )
        activity.logger.info(
            "restored %s (%s)", result.resource, "changed" if result.changed else "unchanged"
        )
        return result

    def _heartbeating(self, work: Callable[[], R]) -> R:
        """``work``'s result (or error), heartbeating while it runs, so that the workflow's
        heartbeat timeout notices a worker that died in the middle of it. Cancelled, it
        still waits for the calls in flight, as batches do."""
        future = self._fan_out_pool.submit(contextvars.copy_context().run, work)
        with activity.shield_thread_cancel_exception():
            while not concurrent.futures.wait([future], timeout=HEARTBEAT_EVERY).done:
                activity.heartbeat()
        return future.result()

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for worker registration."""
        return [
            self.snapshot_target,
            self.apply_target,
            self.snapshot_targets,
            self.apply_targets,
            self.compensate_target,
        ]
