"""Read the organisation policy where the platform team keeps it.

One setting, ``RELMAN_POLICY``, says where:

- a file path (``/etc/relman/policy.yaml``; YAML or JSON),
- an S3 object, ``s3://bucket/key`` (read with the worker's own credentials),
- an SSM parameter, ``ssm:/name`` (String or SecureString, decrypted; 8 KB at most in the
  advanced tier, so large organisations keep their policy in S3).

The release workflow loads it at the start and again at every gate and safe point, so a
change applies to releases in flight; the digest tells it whether anything changed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.aws import AwsClients
from activities.errors import aws_call
from models.policy import (
    LOAD_POLICY,
    LoadPolicyInput,
    Policy,
    PolicyError,
    PolicySnapshot,
    load_policy,
    load_policy_text,
)
from models.validation import Problem

POLICY_ENV = "RELMAN_POLICY"
# How long activities use the policy they read before reading it again: a file is looked
# at (its modification time) at most this often, S3 and SSM are read again this often.
RECHECK_SECONDS = {"file": 1.0, "remote": 30.0}

log = logging.getLogger(__name__)


def policy_source(env: dict[str, str] | None = None) -> str | None:
    """Where the policy lives (``RELMAN_POLICY``), or None when it is not set."""
    value = (os.environ if env is None else env).get(POLICY_ENV, "").strip()
    return value or None


def read_policy(source: str, aws: AwsClients) -> Policy:
    """The validated policy at ``source`` (a path, ``s3://bucket/key`` or ``ssm:/name``).

    Raises :class:`PolicyError` for a policy that is missing fields or malformed, and AWS
    errors as ``activities.errors`` maps them.
    """
    if source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise PolicyError(source, [Problem("", "write an S3 location as s3://bucket/key")])
        with aws_call("s3 get_object", source):
            body = aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return load_policy_text(_text(body, source), source)
    if source.startswith("ssm:"):
        name = source.removeprefix("ssm:")
        with aws_call("ssm get_parameter", source):
            found = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
        return load_policy_text(found["Parameter"]["Value"], source)
    return load_policy(source)


def _text(body: bytes, source: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            source, [Problem("", f"cannot read policy: not UTF-8 text (byte {exc.start})")]
        ) from None


class PolicyReader:
    """The policy in force, for activities that check it again before they act (the roles
    they assume, where they send notifications): read at most every few seconds, and a
    policy that no longer validates leaves the last good one in force (and is logged)."""

    def __init__(self, source: str, aws: AwsClients, clock: Any = time.monotonic):
        self.source, self.aws, self._clock = source, aws, clock
        self._remote = source.startswith(("s3://", "ssm:"))
        self._lock = threading.Lock()
        self._policy: Policy | None = None
        self._checked = float("-inf")
        self._stamp: tuple[int, int] | None = None

    def current(self) -> Policy:
        """The policy now; raises what :func:`read_policy` raises when none was ever read."""
        with self._lock:
            now = self._clock()
            wait = RECHECK_SECONDS["remote" if self._remote else "file"]
            if self._policy is not None and now - self._checked < wait:
                return self._policy
            self._checked = now
            try:
                stamp = None
                if not self._remote:
                    stat = Path(self.source).stat()
                    stamp = (stat.st_mtime_ns, stat.st_size)
                    if self._policy is not None and stamp == self._stamp:
                        return self._policy
                self._policy, self._stamp = read_policy(self.source, self.aws), stamp
            except Exception as exc:
                if self._policy is None:
                    raise
                log.error("organisation policy at %s: %s (the last one read stays in force)",
                          self.source, exc)  # fmt: skip
            return self._policy

    def role_refusal(self, application: str, role_arn: str) -> str | None:
        """Why the policy in force refuses ``role_arn`` for ``application`` (None: allowed)."""
        return self.current().role_refusal(application, role_arn)


class PolicyActivities:
    """Load the organisation policy from the one place ``RELMAN_POLICY`` names."""

    def __init__(self, source: str, aws: AwsClients):
        self.source = source
        self.aws = aws

    @activity.defn(name=LOAD_POLICY)
    def load_policy(self, input: LoadPolicyInput) -> PolicySnapshot:
        """The policy in force now; without the policy itself if its digest is ``known``.

        A policy that does not validate fails for good (retrying cannot fix it): the
        workflow keeps the policy it had and says so.
        """
        try:
            policy = read_policy(self.source, self.aws)
        except PolicyError as exc:
            raise ApplicationError(
                str(exc), type=PolicyError.__name__, non_retryable=True
            ) from None
        digest = policy.digest
        return PolicySnapshot(
            source=self.source,
            version=policy.version,
            digest=digest,
            dev=policy.dev,
            policy=None if digest == input.known_digest else policy,
        )
