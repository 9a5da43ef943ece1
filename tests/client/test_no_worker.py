"""The command line while no worker runs: real `relman` processes, the dev server, moto.

Decisions wait a bounded time for a worker and are not sent when none answers (so nothing
is applied when one comes back); ``--queue-until-worker`` leaves one with Temporal on
purpose; ``approvals`` never says "nothing waiting" when it could not ask; an ended
release's status and history come from its recorded history; a running one shows what
Temporal's visibility knows and when its task queue was last polled. Every wait here is
``--wait-for-worker 1s``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from tests import trust
from tests.client.test_cli import _eventually, arelman
from tests.helpers import seed, ssm, wave
from workflows.release import ReleaseWorkflow

WAIT = ("--wait-for-worker", "1s")


def write_plan(tmp_path: Path, release_id: str, *, gates: bool = True) -> Path:
    """A two-wave plan on parameters of its own (no other test's release overlaps it)."""
    targets = [
        ssm("cfg", f"/no-worker/{release_id}/cfg", "2.4.0"),
        ssm("ops", f"/no-worker/{release_id}/ops", "2.4.0"),
    ]
    finance: dict[str, Any] = {"groups": {"finance-cab": 1}} if gates else {}
    operations: dict[str, Any] = {"groups": {"ops-leads": 1}} if gates else {}
    data = {
        "id": release_id,
        "application": "payments",
        "version": "2.4.0",
        "requested_by": "alice",
        "targets": targets,
        "waves": [
            wave("finance", ["cfg"], **finance),
            wave("operations", ["ops"], department="operations", after=["finance"], **operations),
        ],
    }
    path = tmp_path / f"{release_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli_env(dev_env: WorkflowEnvironment, queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "RELMAN_TASK_QUEUE": queue,
        "RELMAN_HOME": str(tmp_path / "home"),
        "RELMAN_POLICY": str(trust.policy_path()),
    }


async def _status(release_id: str, env: dict[str, str]) -> dict[str, Any]:
    done = await arelman("status", release_id, "-o", "json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def test_decisions_wait_for_a_worker_and_none_is_applied_later(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    release_id = f"no-worker-{uuid.uuid4().hex[:8]}"
    plan = write_plan(tmp_path, release_id)
    seed(aws, {f"/no-worker/{release_id}/cfg": "2.3.0", f"/no-worker/{release_id}/ops": "2.3.0"})
    env = cli_env(dev_env, task_queue, tmp_path)
    async with make_worker(dev_env, aws):
        submitted = await arelman("submit", str(plan), env=env)
        assert submitted.returncode == 0, submitted.stderr

        async def carol_sees_it() -> bool:
            done = await arelman("approvals", "--as", "carol", "-o", "json", env=env)
            return any(a["release_id"] == release_id for a in json.loads(done.stdout))

        assert await _eventually(carol_sees_it), "the gate never showed in visibility"
    # The worker has stopped; Temporal still lists carol as a pending approver.
    polled = re.escape(f"a worker polled task queue '{task_queue}' ") + r"\d+ s ago"

    asked = await arelman("approvals", "--as", "carol", *WAIT, env=env)
    assert asked.returncode == 1
    assert "nothing is waiting" not in asked.stdout
    assert re.fullmatch(
        re.escape(
            f"error: could not read 1 release(s) that list carol as a pending approver: "
            f"{release_id} (no worker answered within 1s: "
        )
        + polled
        + r"\)\n",
        asked.stderr,
    ), asked.stderr

    started = time.monotonic()
    refused = await arelman("approve", release_id, "--wave", "finance", "--as", "bob", *WAIT,
                            env=env)  # fmt: skip
    assert refused.returncode == 1
    assert time.monotonic() - started < 15
    assert re.fullmatch(
        re.escape(
            f"error: cannot approve wave 'finance' of {release_id}: no worker answered for the "
            "release within 1s ("
        )
        + polled
        + re.escape(
            "). The decision was not sent, so it will not be applied: start a worker "
            "(`relman worker`) and run the command again, or add --queue-until-worker to "
            "leave it with Temporal for the next worker"
        )
        + r"\n",
        refused.stderr,
    ), refused.stderr

    # Asked for on purpose, a decision is left with Temporal for the next worker.
    queued = await arelman("approve", release_id, "--wave", "finance", "--as", "carol",
                           "--queue-until-worker", *WAIT, "-o", "json", env=env)  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    answer = json.loads(queued.stdout)
    assert answer["queued"] is True
    assert re.fullmatch(
        re.escape("queued: no worker took it within 1s (")
        + polled
        + re.escape(
            "). Temporal holds it, in memory, for the next worker that picks the release up: "
            "the release applies it if that happens before "
        )
        + r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
        + re.escape(
            " UTC (10m after it was signed) and refuses it after; it is lost if the Temporal "
            "server restarts first"
        ),
        answer["message"],
    ), answer["message"]

    # A running release without a worker: what visibility knows, and the worker's absence.
    shown = await arelman("status", release_id, *WAIT, "-o", "json", env=env)
    assert shown.returncode == 1
    known = json.loads(shown.stdout)
    assert {k: known[k] for k in ("release_id", "status", "application", "version", "phase",
                                  "requested_by", "pending_approvers", "departments",
                                  "task_queue")} == {
        "release_id": release_id, "status": "running", "application": "payments",
        "version": "2.4.0", "phase": "awaiting_approval", "requested_by": "alice",
        "pending_approvers": ["bob", "carol"], "departments": ["finance", "operations"],
        "task_queue": task_queue,
    }  # fmt: skip
    assert known["plan_digest"].startswith("sha256:")
    assert re.fullmatch(polled, known["note"]) and known["worker"]["polled"] is True
    assert shown.stderr.startswith(f"error: release {release_id}: no worker answered within 1s: ")

    # The worker is back: carol's queued approval is applied, bob's refused one never is.
    async with make_worker(dev_env, aws):

        async def finance_decided() -> dict[str, Any] | None:
            st = await _status(release_id, env)
            finance = next(w for w in st["waves"] if w["name"] == "finance")
            return st if finance["approvals"] else None

        st = await _eventually(finance_decided)
        assert st, "the queued approval was not applied"
        finance = next(w for w in st["waves"] if w["name"] == "finance")
        assert [(a["approver"], a["decision"]) for a in finance["approvals"]] == [
            ("carol", "approved")
        ]
        assert not [e for e in st["timeline"] if e.get("actor") == "bob"]


async def test_an_ended_release_reads_without_a_worker(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    release_id = f"no-worker-ended-{uuid.uuid4().hex[:8]}"
    plan = write_plan(tmp_path, release_id, gates=False)
    seed(aws, {f"/no-worker/{release_id}/cfg": "2.3.0", f"/no-worker/{release_id}/ops": "2.3.0"})
    env = cli_env(dev_env, task_queue, tmp_path)
    async with make_worker(dev_env, aws):
        assert (await arelman("submit", str(plan), env=env)).returncode == 0

        async def completed() -> dict[str, Any] | None:
            st = await _status(release_id, env)
            return st if st["phase"] == "completed" else None

        assert await _eventually(completed), "the release did not complete"
        # What the worker answers (a Query): the status the CLI must show without it.
        answered = await dev_env.client.get_workflow_handle(release_id).query(
            ReleaseWorkflow.status
        )
        with_worker = answered.model_dump(mode="json")
        history_with_worker = json.loads(
            (await arelman("history", release_id, "-o", "json", env=env)).stdout
        )
    # No worker polls any more: status and history come from the recorded history.
    started = time.monotonic()
    without = await arelman("status", release_id, "-o", "json", env=env)
    assert without.returncode == 0, without.stderr
    assert json.loads(without.stdout) == with_worker
    assert time.monotonic() - started < 15

    text = await arelman("status", release_id, env=env)
    assert text.returncode == 0, text.stderr
    assert "completed" in text.stdout
    events = len(with_worker["timeline"])
    assert f"Latest events (10 of {events})" in text.stdout

    history = await arelman("history", release_id, "-o", "json", env=env)
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout) == history_with_worker
    verified = await arelman("history", release_id, "--verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "all 1 signed decision(s) verify" in verified.stdout


async def test_a_release_no_worker_ever_ran(
    dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    release_id = f"no-worker-never-{uuid.uuid4().hex[:8]}"
    plan = write_plan(tmp_path, release_id)
    env = cli_env(dev_env, task_queue, tmp_path)
    none = f"no worker has polled task queue '{task_queue}' in the last 5 min"
    # Started with no worker on its task queue (conftest ends it after the test).
    submitted = await arelman("submit", str(plan), "--answer-timeout", "0", env=env)
    assert submitted.returncode == 0, submitted.stderr

    shown = await arelman("status", release_id, *WAIT, env=env)
    assert shown.returncode == 1
    assert shown.stderr == f"error: release {release_id}: no worker answered within 1s: {none}\n"
    assert f"{release_id}  payments 2.4.0  pending" in shown.stdout
    assert "departments: finance, operations" in shown.stdout
    assert shown.stdout.rstrip().endswith(none)

    history = await arelman("history", release_id, *WAIT, env=env)
    assert history.returncode == 1
    assert history.stderr == shown.stderr

    for args, what in (
        (["approve", release_id, "--wave", "finance", "--as", "bob"], "approve wave 'finance' of"),
        (["pause", release_id, "--reason", "incident", "--as", "alice"], "pause"),
    ):
        refused = await arelman(*args, *WAIT, env=env)
        assert refused.returncode == 1
        assert refused.stderr == (
            f"error: cannot {what} {release_id}: no worker answered for the release within "
            f"1s ({none}). The decision was not sent, so it will not be applied: start a "
            "worker (`relman worker`) and run the command again, or add "
            "--queue-until-worker to leave it with Temporal for the next worker\n"
        )

    bad = await arelman("status", release_id, "--wait-for-worker", "soon", env=env)
    assert bad.returncode == 2
    assert bad.stderr == (
        "error: --wait-for-worker: invalid duration 'soon' (write it like 30s, 30m, 48h or 2d)\n"
    )
