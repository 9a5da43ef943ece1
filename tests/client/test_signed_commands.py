"""Every decision command signs what it sends, with the key the actor's settings choose.

The commands run in-process against a stand-in Temporal client that keeps what each sends;
each input is then checked with ``check_decision``, exactly as the workflow checks it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import TypedSearchAttributes

from client import service
from client.cli import main
from client.identity import key_for
from common.stack_state import StackConfig, write_state
from models.dev_policy import DEV_PEOPLE, dev_policy
from models.loader import load_plan
from models.messages import (
    DecisionInput,
    DecisionResult,
    OperatorResult,
    ReleaseInput,
    check_decision,
)
from models.policy import Policy
from models.signing import plan_digest, verify_decision
from tests.ssh_keys import SshKey, make_key

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo.yaml"
RELEASE = "payments-2.4.0-signed"
DIGEST = "sha256:" + "cd" * 32


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SshKey]:
    directory = tmp_path_factory.mktemp("keys")
    return {p: make_key(directory, p) for p in (*DEV_PEOPLE, "mallory")}


@pytest.fixture(scope="module")
def policy(keys: dict[str, SshKey]) -> Policy:
    return dev_policy({p: k.public for p, k in keys.items()})


class Sent:
    """What the commands sent to the stand-in Temporal."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, Any, str | None]] = []
        self.started: list[tuple[Any, dict[str, Any]]] = []


class _Description:
    status = WorkflowExecutionStatus.RUNNING
    task_queue = "relman"
    typed_search_attributes = TypedSearchAttributes.empty

    async def memo_value(self, key: str, default: Any = None) -> Any:
        return {"plan_digest": DIGEST}.get(key, default)


class _Sent:
    """An Update a worker took at once."""

    def __init__(self, outcome: Any):
        self.outcome = outcome

    async def result(self) -> Any:
        return self.outcome


class _Handle:
    def __init__(self, sent: Sent, workflow_id: str):
        self.sent, self.id = sent, workflow_id

    async def describe(self) -> _Description:
        return _Description()

    async def start_update(
        self, update: Any, arg: Any, *, id: str | None = None, wait_for_stage: Any = None
    ) -> _Sent:
        self.sent.updates.append((update.__name__, arg, id))
        if isinstance(arg, DecisionInput):
            return _Sent(
                DecisionResult(
                    wave=arg.wave, accepted=True, satisfied=True, missing={}, message="ok"
                )
            )
        return _Sent(OperatorResult(message="ok"))


class _Client:
    def __init__(self, sent: Sent):
        self.sent = sent

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        return _Handle(self.sent, workflow_id)

    async def list_workflows(self, query: str) -> AsyncIterator[Any]:
        for _ in ():
            yield

    async def start_workflow(self, run: Any, arg: Any, **options: Any) -> None:
        self.sent.started.append((arg, options))


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Sent]:
    record = Sent()

    @asynccontextmanager
    async def temporal(runtime: Any = None) -> AsyncIterator[_Client]:
        yield _Client(record)

    monkeypatch.setattr(service, "temporal", temporal)

    async def worker_answers(*args: Any) -> None:
        pass  # a worker is there (tests/client/test_no_worker.py has none)

    monkeypatch.setattr(service, "_worker_answers", worker_answers)
    for name in ("RELMAN_SSH_KEY", "RELMAN_POLICY", "RELMAN_USER", "TEMPORAL_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RELMAN_HOME", str(tmp_path / "home"))
    yield record


def relman(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exit:
        return int(exit.code or 0)
    return 0


COMMANDS = [
    ("approve", "approve", ["approve", RELEASE, "--wave", "finance", "--comment", "CAB ok"], "bob"),
    ("reject", "reject", ["reject", RELEASE, "--wave", "finance", "--comment", "no"], "carol"),
    ("pause", "pause", ["pause", RELEASE, "--reason", "incident"], "alice"),
    ("resume", "resume", ["resume", RELEASE, "--reason", "resolved"], "alice"),
    ("abort", "abort", ["abort", RELEASE, "--reason", "wrong build"], "alice"),
    (
        "add_freeze",
        "freeze_add",
        ["freeze", "add", RELEASE, "--start", "2026-12-20T00:00:00Z",
         "--end", "2027-01-04T00:00:00Z", "--reason", "year end"],
        "alice",
    ),
    (
        "override_window",
        "override_window",
        ["override-window", RELEASE, "--wave", "operations", "--reason", "P1", "--include-freeze"],
        "alice",
    ),
    ("retry", "retry", ["retry", RELEASE, "--wave", "finance", "--reason", "flaky"], "alice"),
    ("rollback", "rollback", ["rollback", RELEASE, "--wave", "finance", "--reason", "x"], "alice"),
    ("skip_target", "skip_target", ["skip-target", RELEASE, "--target", "t1", "--reason", "gone"],
     "alice"),
]  # fmt: skip


@pytest.mark.parametrize(("update", "action", "args", "actor"), COMMANDS)
def test_every_decision_command_sends_its_actors_signature(
    sent: Sent,
    keys: dict[str, SshKey],
    policy: Policy,
    update: str,
    action: str,
    args: list[str],
    actor: str,
) -> None:
    assert relman(*args, "--as", actor, "--key", str(keys[actor].path)) == 0
    [(name, arg, _)] = sent.updates
    assert name == update
    assert arg.signed is not None and "BEGIN SSH SIGNATURE" in arg.signed.signature
    # What the workflow runs: the payload is exactly this decision, signed by its actor.
    check_decision(
        action,  # type: ignore[arg-type]
        arg,
        policy,
        release_id=RELEASE,
        plan_digest=DIGEST,
        now=datetime.now(UTC),
    )


def test_the_signature_is_the_actors_own_key_only(
    sent: Sent, keys: dict[str, SshKey], policy: Policy
) -> None:
    from models.signing import DecisionRefused

    # mallory's key, claiming to be bob: the payload names bob, the key is not bob's.
    args = ["approve", RELEASE, "--wave", "finance", "--as", "bob"]
    assert relman(*args, "--key", str(keys["mallory"].path)) == 0
    [(_, arg, _)] = sent.updates
    with pytest.raises(DecisionRefused, match="which the organisation policy does not list"):
        check_decision(
            "approve", arg, policy, release_id=RELEASE, plan_digest=DIGEST, now=datetime.now(UTC)
        )


def test_a_missing_key_exits_1_naming_the_path_and_the_setting(
    sent: Sent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-key"
    assert relman("pause", RELEASE, "--reason", "x", "--as", "alice", "--key", str(missing)) == 1
    err = capsys.readouterr().err
    assert f"no SSH key at {missing}" in err and "RELMAN_SSH_KEY" in err
    assert sent.updates == []


def test_submit_signs_the_submission_and_records_the_plan_digest(
    sent: Sent,
    keys: dict[str, SshKey],
    policy: Policy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json", exclude_defaults=True)))
    monkeypatch.setenv("RELMAN_POLICY", str(policy_file))
    monkeypatch.setenv("RELMAN_USER", "alice")
    key = str(keys["alice"].path)
    assert relman("submit", str(DEMO), "--key", key, "--answer-timeout", "0") == 0
    [(arg, options)] = sent.started
    assert isinstance(arg, ReleaseInput)
    plan = load_plan(DEMO)
    assert options["memo"] == {"plan_digest": plan_digest(plan)}
    verify_decision(
        arg.submission,
        policy,
        release_id=plan.id,
        plan_digest=plan_digest(plan),
        action="submit",
        wave=None,
        now=datetime.now(UTC),
    )
    assert arg.submission is not None and arg.submission.payload.actor == "alice"


# --- which key -------------------------------------------------------------------------------


def test_key_order_option_then_setting_then_dev_key_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RELMAN_SSH_KEY", "RELMAN_POLICY", "TEMPORAL_ADDRESS", "TEMPORAL_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "no-temporal.toml"))
    monkeypatch.setenv("RELMAN_HOME", str(tmp_path / "home"))
    config = StackConfig.from_env()
    default = Path("~/.ssh/id_ed25519").expanduser()
    assert key_for("bob") == default

    # The dev stack is recorded, its dev policy and bob's dev key are there: bob's dev key.
    write_state(config, config.fresh_state())
    config.dev_policy_path.write_text("version: dev\n")
    config.dev_key_path("bob").parent.mkdir(parents=True)
    config.dev_key_path("bob").write_text("key")
    assert key_for("bob") == config.dev_key_path("bob")
    assert key_for("mallory") == default  # no dev key of theirs
    # Talking to another Temporal, or under another policy: the dev keys do not apply.
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example.com:7233")
    assert key_for("bob") == default
    monkeypatch.delenv("TEMPORAL_ADDRESS")
    monkeypatch.setenv("RELMAN_POLICY", "s3://policies/relman.yaml")
    assert key_for("bob") == default
    monkeypatch.delenv("RELMAN_POLICY")

    monkeypatch.setenv("RELMAN_SSH_KEY", "/keys/bob")
    assert key_for("bob") == Path("/keys/bob")
    assert key_for("bob", Path("/tokens/bob.pub")) == Path("/tokens/bob.pub")


# --- submit refusals (a real `relman` process; nothing to connect to) --------------------------


def run_relman(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1", **env},
        timeout=60,
    )


def test_submit_as_someone_else_than_the_requester_exits_2(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    done = run_relman("submit", str(DEMO), "--as", "mallory", env={"RELMAN_HOME": home})
    assert done.returncode == 2
    assert "requested_by 'alice' does not match the signer 'mallory'" in done.stderr
    assert "cannot connect" not in done.stderr  # refused before anything started


def test_submit_lists_every_policy_violation_and_exits_2(tmp_path: Path, policy: Policy) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json", exclude_defaults=True)))
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        DEMO.read_text().replace(
            "departments:",
            "approver_groups:\n  finance-cab: [alice]\noperator_groups: [finance-cab]\n"
            "allow_self_approval: true\ndepartments:",
        )
    )
    done = run_relman(
        "submit", str(plan), "--as", "alice",
        env={"RELMAN_POLICY": str(policy_file), "RELMAN_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    for field in (
        "approver_groups.finance-cab: plans name groups only",
        "operator_groups: plans may not name operators",
        "allow_self_approval: the organisation policy does not allow self-approval",
    ):
        assert field in done.stderr
    assert "cannot connect" not in done.stderr


def test_submit_with_an_invalid_policy_setting_exits_2(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("version: x\npeople: []\n")
    done = run_relman("submit", str(DEMO), "--as", "alice", env={"RELMAN_POLICY": str(policy_file)})
    assert done.returncode == 2
    assert f"RELMAN_POLICY: {policy_file}: people" in done.stderr
