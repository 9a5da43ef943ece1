"""The organisation the tests run in: people with SSH keys, groups, the policy file the test
workers read, and signing of every decision the way the CLI signs it.

Keys are made once per test session with ``ssh-keygen`` (``tests.ssh_keys``) and decisions
are signed with ``ssh-keygen -Y sign`` (``client.signer``), so the workflow verifies exactly
what it verifies in production. ``issued_at`` is workflow time: on the time-skipping server
that is the server's clock, years ahead of the wall clock.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from client.signer import sign_bytes
from models.messages import (
    DecisionInput,
    OperatorInput,
    ReleaseInput,
    decision_payload,
)
from models.plan import ReleasePlan
from models.signing import DecisionAction, DecisionPayload, SignedDecision, plan_digest
from tests.ssh_keys import SshKey, make_key

# Everyone the tests name. mallory is a person with a key in no group: an identified
# outsider. alice requests most releases.
PEOPLE = ("alice", "bob", "carol", "dave", "erin", "frank", "olga", "kenji", "sam", "mallory")
GROUPS = {
    "finance-cab": ["bob", "carol"],
    "ops-leads": ["dave", "erin"],
    "on-call": ["olga"],
    "cfo-office": ["frank"],
    "apac-leads": ["kenji"],
    "security": ["carol", "sam"],
    "self-approvers": ["alice", "bob"],
}
# Who operates every test application's releases besides its requester.
OPERATOR_GROUPS = ["on-call", "ops-leads"]
# An application whose requesters may approve their own releases.
SELF_SERVICE = "self-service"

_KEYS: dict[str, SshKey] = {}
_POLICY: Path | None = None
# Clients of time-skipping servers: decisions sent through them are signed at server time.
_TIME_SKIPPING: dict[int, WorkflowEnvironment] = {}


def policy_data(keys: dict[str, SshKey]) -> dict[str, Any]:
    """The test organisation's policy, as its YAML file holds it."""
    every_group = sorted(g for g in GROUPS if g != "self-approvers")
    return {
        "version": "tests-1",
        "people": [{"id": p, "name": p.title(), "ssh_keys": [keys[p].public]} for p in PEOPLE],
        "groups": GROUPS,
        "applications": {
            SELF_SERVICE: {
                "approvers": {"*": ["self-approvers"]},
                "operator_groups": OPERATOR_GROUPS,
                "allow_self_approval": True,
            },
            "*": {
                "approvers": {"*": every_group},
                "operator_groups": OPERATOR_GROUPS,
                # moto's default account and the two department accounts tests assume roles in
                "aws_accounts": ["123456789012", "111111111111", "222222222222"],
                "sns_topics": [
                    "arn:aws:sns:us-east-1:123456789012:relman-notifications",
                    "arn:aws:sns:us-east-1:123456789012:no-such-topic",
                ],
                "webhook_hosts": ["127.0.0.1", "localhost"],
                "check_hosts": ["127.0.0.1", "localhost"],
            },
        },
    }


def setup(directory: Path | None = None) -> Path:
    """Make every person's key and write the policy; the policy file's path (once a session)."""
    global _POLICY
    if _POLICY is None:
        directory = directory or Path(tempfile.mkdtemp(prefix="relman-trust-"))
        for person in PEOPLE:
            _KEYS[person] = make_key(directory, person)
        _POLICY = directory / "policy.yaml"
        _POLICY.write_text(yaml.safe_dump(policy_data(_KEYS), sort_keys=False))
    return _POLICY


def policy_path() -> Path:
    """The test policy file (RELMAN_POLICY of every test worker)."""
    return setup()


def key_of(person: str) -> SshKey:
    setup()
    return _KEYS[person]


def time_skipping(env: WorkflowEnvironment, client: Client | None = None) -> None:
    """Sign decisions sent through ``client`` (default: ``env``'s) at that server's time."""
    _TIME_SKIPPING[id(client or env.client)] = env


def policy_activity() -> Any:
    """The ``load_policy`` activity reading the test policy file (for hand-built workers)."""
    from activities.policy import PolicyActivities

    return PolicyActivities(str(policy_path()), None).load_policy  # type: ignore[arg-type]


async def now_for(client: Client) -> datetime:
    """Workflow time as the server of ``client`` sees it."""
    env = _TIME_SKIPPING.get(id(client))
    return await env.get_current_time() if env is not None else datetime.now(UTC)


def sign(payload: DecisionPayload, person: str | None = None) -> SignedDecision:
    """``payload`` signed with the key of ``person`` (default: its actor)."""
    key = key_of(person or payload.actor)
    return SignedDecision(
        payload=payload, signature=sign_bytes(payload.canonical_bytes(), key.path)
    )


async def submission(
    client: Client, plan: ReleasePlan, signer: str | None = None
) -> SignedDecision:
    """The requester's signed submission of ``plan``."""
    payload = DecisionPayload(
        release_id=plan.id,
        plan_digest=plan_digest(plan),
        action="submit",
        actor=plan.requested_by,
        issued_at=await now_for(client),
    )
    return sign(payload, signer)


async def release_input(client: Client, plan: ReleasePlan, **fields: Any) -> ReleaseInput:
    """A ``ReleaseInput`` for ``plan`` carrying its requester's signed submission."""
    return ReleaseInput(plan=plan, submission=await submission(client, plan), **fields)


# The signed action of each Update, by the update method's name.
ACTIONS: dict[str, DecisionAction] = {
    "approve": "approve",
    "reject": "reject",
    "pause": "pause",
    "resume": "resume",
    "abort": "abort",
    "add_freeze": "freeze_add",
    "override_window": "override_window",
    "retry": "retry",
    "rollback": "rollback",
    "skip_target": "skip_target",
}


async def signed(
    handle: WorkflowHandle[Any, Any],
    update: Any,
    input: DecisionInput | OperatorInput,
    signer: str | None = None,
) -> DecisionInput | OperatorInput:
    """``input`` for ``update`` on ``handle``'s release, signed by its actor (or ``signer``)."""
    from workflows.release import ReleaseWorkflow

    status = await handle.query(ReleaseWorkflow.status)
    payload = decision_payload(
        ACTIONS[update.__name__],
        input,
        release_id=handle.id,
        plan_digest=status.plan_digest or "",
        issued_at=await now_for(handle._client),
    )
    return input.model_copy(update={"signed": sign(payload, signer)})


async def signed_update(
    handle: WorkflowHandle[Any, Any], update: Any, input: DecisionInput | OperatorInput, **kw: Any
) -> Any:
    """Run ``update`` with ``input`` signed by its actor, as the CLI does."""
    return await handle.execute_update(update, await signed(handle, update, input), **kw)


def build_test_worker(*args: Any, **kwargs: Any) -> Any:
    """``worker.main.build_worker`` reading the test organisation's policy."""
    from worker.main import build_worker

    return build_worker(*args, policy_source=str(policy_path()), **kwargs)


def build_worker_with_policy(
    env: WorkflowEnvironment, queue: str, aws: Any, executor: Any, policy: Path
) -> Any:
    """A relman worker reading ``policy`` (a test's own file, which it may change)."""
    from worker.main import build_worker

    return build_worker(env.client, queue, aws, executor, policy_source=str(policy))
