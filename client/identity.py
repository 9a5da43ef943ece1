"""Who the CLI signs decisions as, with which key, and which policy it checks plans against.

The key that signs a decision is, first found: ``--key PATH``, ``RELMAN_SSH_KEY``, the
actor's dev key (``$RELMAN_HOME/dev-keys/<actor>``) while the CLI talks to the embedded
stack under its dev policy, and ``~/.ssh/id_ed25519``. The actor stays what ``--as``,
``RELMAN_USER`` or the login name says: the workflow accepts the decision only if the key
is one the organisation policy lists for that person.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.errors import BadInput
from common.stack_state import StackConfig, read_state, same_address

if TYPE_CHECKING:
    from models.plan import ReleasePlan
    from models.policy import Policy

POLICY_ENV = "RELMAN_POLICY"  # the same setting the worker reads (activities.policy)
# client.signer's settings, named here too so that `relman --help` need not import it.
KEY_ENV = "RELMAN_SSH_KEY"
DEFAULT_KEY = "~/.ssh/id_ed25519"

KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help=f"SSH key to sign with (default: ${KEY_ENV}, the dev stack's key of the actor, "
        f"{DEFAULT_KEY}); a .pub file signs through ssh-agent",
    ),
]


def dev_policy_in_use() -> Path | None:
    """The embedded stack's dev policy, when the CLI talks to that stack and no other
    policy (``RELMAN_POLICY``) is configured; else None."""
    if os.environ.get(POLICY_ENV, "").strip():
        return None
    config = StackConfig.from_env()
    state = read_state(config)
    if state is None or not config.dev_policy_path.is_file():
        return None
    from common.connection import connect_config

    try:
        target = connect_config().get("target_host")
    except (OSError, ValueError, RuntimeError):
        return None
    at_stack = isinstance(target, str) and same_address(target, state.temporal_address)
    return config.dev_policy_path if at_stack else None


def key_for(actor: str, explicit: Path | None = None) -> Path:
    """The key to sign ``actor``'s decision with (see the module docstring for the order)."""
    if explicit is not None:
        return explicit.expanduser()
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    if dev_policy_in_use() is not None:
        dev_key = StackConfig.from_env().dev_key_path(actor)
        if dev_key.is_file():
            return dev_key
    return Path(DEFAULT_KEY).expanduser()


def readable_policy() -> Policy | None:
    """The organisation policy the CLI can read: ``RELMAN_POLICY`` (file, S3, SSM, with the
    CLI's own AWS credentials), else the dev stack's dev policy in use; None otherwise.

    A policy that is there but invalid is bad input; one the CLI cannot reach (no AWS
    credentials, say) is left to the worker, which checks the plan again at start.
    """
    from models.policy import PolicyError, load_policy

    source = os.environ.get(POLICY_ENV, "").strip()
    try:
        if not source:
            dev = dev_policy_in_use()
            return load_policy(dev) if dev is not None else None
        if source.startswith(("s3://", "ssm:")):
            from activities.aws import AwsClients
            from activities.policy import read_policy

            try:
                return read_policy(source, AwsClients.from_env())
            except PolicyError:
                raise
            except Exception as exc:  # AWS errors of any kind: the worker checks again
                print(f"warning: cannot read the policy at {source}: {exc}", file=sys.stderr)
                return None
        return load_policy(source)
    except PolicyError as exc:
        raise BadInput(f"{POLICY_ENV}: {exc}") from None


def submission_problems(plan: ReleasePlan, signer: str, policy: Policy | None) -> list[str]:
    """Why the CLI refuses to submit ``plan`` signed by ``signer``: the requester must be
    the signer, and the plan must keep to ``policy`` (when the CLI can read one)."""
    from models.policy import plan_violations

    problems = []
    if plan.requested_by != signer:
        problems.append(
            f"requested_by {plan.requested_by!r} does not match the signer {signer!r} "
            "(submit as the requester with --as, RELMAN_USER or their login)"
        )
    if policy is not None:
        problems += plan_violations(plan, policy)
    return problems
