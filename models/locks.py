"""Resource locks: one lock workflow per canonical resource key (``models.resources``), so
that at no moment do two releases change the same resource, whatever visibility says.

A release asks for the locks of all its resources at its start (signal-with-start: a lock
workflow handles its requests one at a time, in the order they arrived, so it decides alone)
and reads each lock's answer with a query; under contention, with ``queue: true``, the release lets
go and then waits in line for each lock in key order, so two releases never wait for each
other. It lets its locks go when it ends in any way. A lock whose holder ended without
letting go (terminated) is freed when another release asks for it or waits for it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from models.plan import ReleasePlan
from models.resources import plan_resource_keys

LOCK_WORKFLOW = "ResourceLockWorkflow"
LOCK_ANSWER_SIGNAL = "lock_answer"
# Activities (activities/locks.py).
RESOURCE_LOCKS = "resource_locks"
REQUEST_LOCKS = "request_locks"
RELEASE_LOCKS = "release_locks"
RELEASES_RUNNING = "releases_running"


def lock_workflow_id(digest: str) -> str:
    """The id of the lock workflow of the resource whose key digest is ``digest``."""
    return f"relman-lock/{digest}"


class LockKey(BaseModel):
    """One resource a release changes: its key's digest, and what it is for people."""

    digest: str
    description: str


class ResourceLocksInput(BaseModel):
    """Which resources a plan changes, as canonical keys (resolved with the worker's
    account and default region)."""

    plan: ReleasePlan


class ResourceLocks(BaseModel):
    """The plan's resources in the order their locks are taken (by digest)."""

    keys: list[LockKey] = Field(default_factory=list)


def lock_keys(plan: ReleasePlan, *, account: str, region: str) -> ResourceLocks:
    """The plan's resources as lock keys, in the order locks are taken (by digest): the
    canonical keys of ``models.resources`` resolved with the worker's ``account`` and
    default ``region``, so one resource spelled two ways is one lock."""
    keys: dict[str, LockKey] = {}
    for target, found in plan_resource_keys(plan, account=account, default_region=region):
        for key in found:
            digest = key.digest()
            keys[digest] = LockKey(digest=digest, description=f"{target.resource} ({key})")
    return ResourceLocks(keys=[keys[d] for d in sorted(keys)])


class LockState(BaseModel):
    """A lock: its resource, the release holding it, and those waiting in order."""

    key: LockKey
    holder: str | None = None
    queue: list[str] = Field(default_factory=list)


class AcquireLock(BaseModel):
    """Ask for a lock; ``queue``: wait in line when it is held (else be refused)."""

    release_id: str
    queue: bool = False


class LockAnswer(BaseModel):
    """A lock's answer to a release: granted, or who holds it and the place in line (0: the
    release does not wait)."""

    digest: str
    granted: bool
    holder: str | None = None
    position: int = 0


class LockAnswers(BaseModel):
    """The answers of the locks a release asked, in the order asked."""

    answers: list[LockAnswer] = Field(default_factory=list)


class ReleaseLock(BaseModel):
    """Let a lock go, or leave its line."""

    release_id: str


class RequestLocksInput(BaseModel):
    """Ask each lock of ``keys`` for ``release_id``; each answers with a signal."""

    release_id: str
    keys: list[LockKey]
    queue: bool = False


class ReleaseLocksInput(BaseModel):
    """Let go of (or leave the line of) every lock in ``digests``."""

    release_id: str
    digests: list[str]


class RunningInput(BaseModel):
    release_ids: list[str]


class RunningResult(BaseModel):
    running: list[str] = Field(default_factory=list)
