"""What *My approvals* shows as a target's value now: read from AWS (moto over HTTP) with
the target kinds' own snapshot reads, never a secret, only through roles the policy allows,
within a short time, and kept a few seconds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from pydantic import TypeAdapter

from activities.aws import AwsClients
from console.current import CACHE_SECONDS, CurrentValues, Wanted
from models.plan import Target
from tests.helpers import seed

ROLE = "arn:aws:iam::123456789012:role/relman-deploy"


def target(**fields: Any) -> Target:
    return TypeAdapter(Target).validate_python({"kind": "ssm_parameter", **fields})


def refuse_roles(application: str, role_arn: str) -> str | None:
    return f"role {role_arn!r} is not allowed for application {application!r}"


async def test_current_values_are_read_from_aws_and_secrets_never_shown(aws: AwsClients) -> None:
    seed(aws, {"/payments/engine": "ledger-v1"})
    seed(aws, {"/payments/db-password": "hunter2-do-not-show"}, type_="SecureString")
    current = CurrentValues(aws.checked_by(refuse_roles))
    wanted = [
        Wanted("r1", "payments", target(name="engine", parameter="/payments/engine",
                                        value="ledger-v2")),
        Wanted("r1", "payments", target(name="password", parameter="/payments/db-password",
                                        value="new-secret", type="SecureString")),
        # Declared a plain String, but a SecureString in AWS: masked all the same.
        Wanted("r1", "payments", target(name="found-secret", parameter="/payments/db-password",
                                        value="plain")),
        Wanted("r1", "payments", target(name="absent", parameter="/payments/new", value="x")),
        Wanted("r1", "payments", target(name="elsewhere", parameter="/payments/engine",
                                        value="y", role_arn=ROLE)),
    ]  # fmt: skip
    found = await current.read(wanted)
    assert found["r1", "engine"].display == "ledger-v1"
    assert found["r1", "engine"].read_at is not None
    assert found["r1", "password"].display == "****"
    assert found["r1", "found-secret"].display == "****"
    assert "hunter2" not in repr(found)
    assert found["r1", "absent"].display == "(absent)"
    assert found["r1", "elsewhere"].display is None
    assert found["r1", "elsewhere"].problem == (
        f"role {ROLE!r} is not allowed for application 'payments'"
    )
    current.close()


async def test_values_are_kept_a_few_seconds_and_a_slow_aws_does_not_hold_the_page(
    aws: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(aws, {"/payments/engine": "ledger-v1"})
    now = [100.0]
    current = CurrentValues(aws, clock=lambda: now[0], timeout=0.5)
    wanted = [Wanted("r1", "payments", target(name="engine", parameter="/payments/engine",
                                              value="ledger-v2"))]  # fmt: skip
    assert (await current.read(wanted))["r1", "engine"].display == "ledger-v1"
    seed(aws, {"/payments/engine": "ledger-v9"})
    assert (await current.read(wanted))["r1", "engine"].display == "ledger-v1"  # kept
    now[0] += CACHE_SECONDS + 1
    assert (await current.read(wanted))["r1", "engine"].display == "ledger-v9"

    # AWS stops answering: the page gets "not read" after the timeout, not a hang, and the
    # value read late is there for the next page.
    release = threading.Event()
    handler = current.handlers["ssm_parameter"]
    original = handler.snapshot

    def slow(target: Any) -> Any:
        release.wait(10)
        return original(target)

    monkeypatch.setattr(handler, "snapshot", slow)
    now[0] += CACHE_SECONDS + 1
    late = (await current.read(wanted))["r1", "engine"]
    assert (late.display, late.problem) == (
        None,
        "not read within 0.5 s (AWS is slow to answer; reload)",
    )
    release.set()
    for _ in range(100):
        if current._reading == {}:
            break
        threading.Event().wait(0.02)
    assert (await current.read(wanted))["r1", "engine"].display == "ledger-v9"
    current.close()
