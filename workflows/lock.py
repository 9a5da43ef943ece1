"""ResourceLockWorkflow: the lock of one resource, held by at most one release at a time.

A release takes a free lock by starting its workflow with itself already named as holder
(the server runs one workflow per id, so of two such starts one wins). While a lock runs,
releases ask it with the ``request`` update (update-with-start, so the answer comes back in
the same round trip even if the run has just ended), or where the server has no
update-with-start with the ``acquire`` signal (signal-with-start), and let it go with
``release``. The lock handles requests one at a time in the order they
arrived, so it alone decides who holds it, without visibility. Its answer (granted, or held
by another and, with ``queue``, a place in line) is the update's result, or is read with the
``answer`` query after a signal; a release
waiting in line is told with a ``lock_answer`` signal when its turn comes. A holder that
ended without letting go (terminated) is noticed when another release asks for the lock or
waits for it. An idle lock ends; a busy one continues as new before its history grows large.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.locks import (
        LOCK_ANSWER_SIGNAL,
        LOCK_WORKFLOW,
        RELEASES_RUNNING,
        AcquireLock,
        LockAnswer,
        LockState,
        ReleaseLock,
        RunningInput,
        RunningResult,
    )

# While releases wait in line, how often the lock checks that its holder still runs.
HOLDER_CHECK_INTERVAL = timedelta(minutes=1)
HOLDER_CHECK_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=LOCK_WORKFLOW)
class ResourceLockWorkflow:
    """Who holds one resource's lock, and who waits for it in order."""

    @workflow.init
    def __init__(self, state: LockState) -> None:
        self._state = state
        self._requests: list[AcquireLock] = []  # acquire signals not yet answered
        self._answers: dict[str, LockAnswer] = {}  # release -> the answer to its last request
        self._changes = 0  # bumped by every request and release, for the waits below

    @workflow.run
    async def run(self, state: LockState) -> LockState:
        while True:
            while self._requests:
                # Answered before it leaves the list: a request in the list has no answer yet.
                await self._answer(self._requests[0])
                self._requests.pop(0)
            if self._state.holder is None and not self._state.queue:
                await workflow.wait_condition(workflow.all_handlers_finished)
                return self._state  # idle: the next asker starts a new run
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(self._state)
            seen = self._changes
            try:
                await workflow.wait_condition(
                    lambda seen=seen: self._changes != seen,  # type: ignore[misc]
                    timeout=HOLDER_CHECK_INTERVAL if self._state.queue else None,
                    timeout_summary="check the holder still runs",
                )
            except TimeoutError:
                await self._free_if_holder_ended()

    @workflow.signal
    def acquire(self, input: AcquireLock) -> None:
        """``input.release_id`` asks for the lock; answered in arrival order."""
        self._requests.append(input)
        self._changes += 1

    @workflow.update
    async def request(self, input: AcquireLock) -> LockAnswer:
        """``acquire``, answered in one round trip (update-with-start): the answer once the
        lock has decided, in arrival order with every other request."""
        self._requests.append(input)
        self._changes += 1
        await workflow.wait_condition(lambda: all(r is not input for r in self._requests))
        return self._answers[input.release_id]

    @workflow.signal
    def release(self, input: ReleaseLock) -> None:
        """``input.release_id`` lets the lock go, or leaves the line."""
        if self._state.holder == input.release_id:
            self._pass_on()
        elif input.release_id in self._state.queue:
            self._state.queue.remove(input.release_id)
        self._answers.pop(input.release_id, None)
        self._changes += 1

    @workflow.query
    def state(self) -> LockState:
        return self._state

    @workflow.query
    def answer(self, release_id: str) -> LockAnswer | None:
        """The answer to ``release_id``'s last request; None while it is not answered."""
        if any(r.release_id == release_id for r in self._requests):
            return None
        return self._answers.get(release_id)

    async def _answer(self, request: AcquireLock) -> None:
        state, asker = self._state, request.release_id
        if state.holder is not None and state.holder != asker:
            await self._free_if_holder_ended()
        digest = state.key.digest
        if state.holder == asker:
            self._answers[asker] = LockAnswer(digest=digest, granted=True)
            return
        if state.holder is None and (not state.queue or state.queue[0] == asker):
            if asker in state.queue:
                state.queue.remove(asker)
            state.holder = asker
            self._answers[asker] = LockAnswer(digest=digest, granted=True)
            return
        holder = state.holder or state.queue[0]
        if request.queue and asker not in state.queue:
            state.queue.append(asker)
        position = state.queue.index(asker) + 1 if asker in state.queue else 0
        self._answers[asker] = LockAnswer(
            digest=digest, granted=False, holder=holder, position=position
        )

    def _pass_on(self) -> None:
        self._state.holder = None
        if self._state.queue:
            holder = self._state.holder = self._state.queue.pop(0)
            answer = LockAnswer(digest=self._state.key.digest, granted=True)
            self._answers[holder] = answer
            self._tell(holder, answer)

    def _tell(self, release_id: str, answer: LockAnswer) -> None:
        handle = workflow.get_external_workflow_handle(release_id)
        task = asyncio.ensure_future(handle.signal(LOCK_ANSWER_SIGNAL, answer))
        # A release that has ended reads no answers; its lock is passed on when noticed.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _free_if_holder_ended(self) -> None:
        holder = self._state.holder
        if holder is None:
            return
        found = await workflow.execute_activity(
            RELEASES_RUNNING,
            RunningInput(release_ids=[holder]),
            result_type=RunningResult,
            start_to_close_timeout=HOLDER_CHECK_TIMEOUT,
            summary=f"is {holder} still running",
        )
        if holder not in found.running and self._state.holder == holder:
            workflow.logger.info("lock %s: holder %s has ended", self._state.key.digest, holder)
            self._pass_on()
