"""The relman command line end to end: a real `relman` process, the dev server, moto."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from tests import trust

ROOT = Path(__file__).resolve().parents[2]
RELMAN = [sys.executable, "-m", "client.cli"]
DEMO = ROOT / "examples" / "demo.yaml"


def relman(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in its own process."""
    return subprocess.run(
        [*RELMAN, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def signing_env(args: tuple[str, ...], env: dict[str, str]) -> dict[str, str]:
    """``env`` for a decision by the ``--as`` person (else alice, who requests the test
    releases), signed with their key from the test organisation's policy."""
    person = args[args.index("--as") + 1] if "--as" in args else "alice"
    return {"RELMAN_USER": "alice", "RELMAN_SSH_KEY": str(trust.key_of(person).path), **env}


async def arelman(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``relman`` without blocking the event loop the in-process worker runs on; decisions
    are signed as the person they are made by."""
    return await asyncio.to_thread(relman, *args, env=signing_env(args, env))


def test_plan_check_prints_waves_in_order() -> None:
    result = relman("plan", "check", str(DEMO), "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["wave_order"] == ["finance", "operations"]

    text = relman("plan", "check", str(DEMO))
    assert text.returncode == 0
    assert "finance-cab x1; timeout 2d -> reject" in text.stdout


def test_plan_check_bad_plan_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("timeout: 2d", "timeout: soon"))
    result = relman("plan", "check", str(bad))
    assert result.returncode == 2
    assert (
        f"{bad}: waves[1].approval.timeout: invalid duration 'soon' "
        "(write it like 30s, 30m, 48h or 2d)" in result.stderr
    )


def test_plan_schema_is_json_schema() -> None:
    for args in (("plan", "schema"), ("plan", "schema", "-o", "json")):
        result = relman(*args)
        assert result.returncode == 0
        schema = json.loads(result.stdout)
        assert set(schema["required"]) >= {"id", "application", "version", "targets", "waves"}


def test_an_unknown_phase_is_bad_input_not_an_empty_list() -> None:
    phases = (
        "pending, waiting_for_window, awaiting_approval, deploying, baking, paused, "
        "rolling_back, completed, rolled_back, rolled_back_with_skips, rejected, failed, "
        "cancelled, rollback_failed"
    )
    message = f"--phase: unknown release phase 'bogus' (one of: {phases})"
    result = relman("list", "--phase", "bogus")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip() == f"error: {message}"
    # With -o json, a script reading stdout gets the refusal as JSON as well.
    as_json = relman("list", "--phase", "bogus", "-o", "json")
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout) == {"error": message, "exit_code": 2}


def test_a_failure_with_json_output_is_json_on_stdout() -> None:
    result = relman("status", "x", "-o", "json", env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["exit_code"] == 1
    assert error["error"].startswith("cannot connect to Temporal at 127.0.0.1:1")


def test_usage_error_exits_2() -> None:
    result = relman("status")
    assert result.returncode == 2
    assert "Missing argument 'ID'" in result.stderr


def test_unreachable_temporal_fails_with_address() -> None:
    result = relman("status", "x", env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.returncode == 1
    assert "cannot connect to Temporal at 127.0.0.1:1" in result.stderr


def _seed(aws: AwsClients) -> None:
    for region, name in (
        ("eu-central-1", "/payments/finance/api/version"),
        ("eu-central-1", "/payments/finance/settlement/engine"),
        ("us-east-1", "/payments/operations/api/version"),
    ):
        aws.client("ssm", region).put_parameter(Name=name, Value="2.3.0", Type="String")


async def _eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll ``check`` (visibility is eventually consistent) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def test_release_through_the_cli(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    _seed(aws)
    plan = tmp_path / "plan.yaml"
    release_id = f"payments-cli-{task_queue[-8:]}"
    plan.write_text(DEMO.read_text().replace("id: payments-2.4.0", f"id: {release_id}"))
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "RELMAN_TASK_QUEUE": task_queue,
        "RELMAN_HOME": str(tmp_path / "home"),
        # The CLI checks the plan against the policy the workers use before it submits.
        "RELMAN_POLICY": str(trust.policy_path()),
    }
    async with make_worker(dev_env, aws):
        # --wait: the pipeline's step follows the release to its end (piped: one line per
        # event) and its exit code says whether it completed.
        submitting = asyncio.create_task(arelman("submit", str(plan), "--wait", env=env))

        async def waiting_for_bob() -> list[Any]:
            out = await arelman("approvals", "--as", "bob", "-o", "json", env=env)
            return [a for a in json.loads(out.stdout) if a["release_id"] == release_id]

        waiting = await _eventually(waiting_for_bob)
        again = await arelman("submit", str(plan), env=env)
        assert again.returncode == 1
        assert f"release id {release_id!r} is already used" in again.stderr
        assert waiting and waiting[0]["pending"]["wave"] == "finance"
        assert waiting[0]["pending"]["missing"] == {"finance-cab": 1}

        refused = await arelman("approve", release_id, "--wave", "finance", "--as", "dave", env=env)
        assert refused.returncode == 1
        assert "dave is not in any approver group of wave 'finance' (finance-cab)" in refused.stderr

        approved = await arelman(
            "approve", release_id, "--wave", "finance", "--as", "bob",
            "--comment", "CAB-1234 ok", "-o", "json", env=env,
        )  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        assert json.loads(approved.stdout)["satisfied"] is True

        async def operations_waiting() -> bool:
            out = await arelman("status", release_id, "-o", "json", env=env)
            st = json.loads(out.stdout)
            return [p["wave"] for p in st["pending_approvals"]] == ["operations"]

        assert await _eventually(operations_waiting)
        done = await arelman("approve", release_id, "--wave", "operations", "--as", "erin", env=env)
        assert done.returncode == 0, done.stderr

        async def completed() -> dict[str, Any] | None:
            out = await arelman("status", release_id, "-o", "json", env=env)
            st = json.loads(out.stdout)
            return st if st["phase"] == "completed" else None

        st = await _eventually(completed)
        assert st, "release did not complete"
        submitted = await submitting
        assert submitted.returncode == 0, submitted.stderr
        lines = submitted.stdout.splitlines()
        assert lines[0] == release_id
        assert lines[-1] == f"release {release_id} completed"
        assert any(
            "approved  wave=finance  by=bob  " in line and line.endswith(' - "CAB-1234 ok"')
            for line in lines
        )
        assert sum(" finished  " in line for line in lines) == 1  # each event once
        targets = {t["name"]: t for w in st["waves"] for t in w["targets"]}
        assert targets["finance-settlement-engine"]["before"] == "2.3.0"
        assert targets["finance-settlement-engine"]["after"] == "ledger-v2"
        engine = aws.client("ssm", "eu-central-1").get_parameter(
            Name="/payments/finance/settlement/engine"
        )
        assert engine["Parameter"]["Value"] == "ledger-v2"

        history = await arelman("history", release_id, "-o", "json", env=env)
        events = json.loads(history.stdout)["timeline"]
        approval = next(e for e in events if e["kind"] == "approved" and e["actor"] == "bob")
        assert approval["comment"] == "CAB-1234 ok"
        assert approval["evidence"]["payload"]["comment"] == "CAB-1234 ok"

        # Every signed decision re-verifies against the policy from the release's history,
        # and the exported record verifies again with no Temporal at all.
        verified = await arelman("history", release_id, "--verify", "-o", "json", env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        record = json.loads(verified.stdout)
        assert [(v["kind"], v["actor"], v["outcome"]) for v in record["verification"]] == [
            ("started", "alice", "verified"),
            ("approved", "bob", "verified"),
            ("approved", "erin", "verified"),
        ]
        assert [p["version"] for p in record["policies"]] == ["tests-1"]
        audit = tmp_path / "audit.json"
        audit.write_text(verified.stdout)
        offline = await arelman(
            "history", "--verify", "--file", str(audit), env={"TEMPORAL_ADDRESS": "127.0.0.1:1"}
        )
        assert offline.returncode == 0, offline.stderr
        assert "all 3 signed decision(s) verify" in offline.stdout
        assert events[0]["kind"] == "started" and events[-1]["kind"] == "finished"
        # status can carry the latest events only; history has them all (paged).
        latest = await arelman("status", release_id, "--events", "2", "-o", "json", env=env)
        cut = json.loads(latest.stdout)
        assert (cut["timeline"], cut["timeline_total"]) == (events[-2:], len(events))
        # Without --events, JSON status has every event (paged, as history fetches them).
        whole = json.loads((await arelman("status", release_id, "-o", "json", env=env)).stdout)
        assert (whole["timeline"], whole.get("timeline_total")) == (events, None)

        async def listed() -> list[Any]:
            out = await arelman(
                "list", "--app", "payments", "--phase", "completed", "-o", "json", env=env
            )
            return [r for r in json.loads(out.stdout) if r["release_id"] == release_id]

        rows = await _eventually(listed)
        assert rows and rows[0]["version"] == "2.4.0"

        text = await arelman("status", release_id, env=env)
        assert text.returncode == 0
        assert "completed" in text.stdout
        assert f"Latest events (10 of {len(events)})" in text.stdout
        watched = await arelman("status", release_id, "--watch", env=env)
        assert watched.returncode == 0  # the watch ends when the release has ended
        # Not a terminal: every event as one line, then how it ended.
        assert len(watched.stdout.splitlines()) == len(events) + 1
        assert watched.stdout.splitlines()[-1] == f"release {release_id} completed"

    late = await arelman("approve", release_id, "--wave", "finance", "--as", "carol", env=env)
    assert late.returncode == 1
    assert (
        f"cannot approve wave 'finance' of {release_id}: the release has already ended "
        "(completed)" in late.stderr
    )

    unknown = await arelman("status", "no-such-release", env=env)
    assert unknown.returncode == 2
    assert "unknown release 'no-such-release'" in unknown.stderr


@pytest.mark.parametrize(
    "args", [["approve", "nope", "--wave", "w", "--as", "bob"], ["history", "nope"]]
)
async def test_unknown_release_exits_2(dev_env: WorkflowEnvironment, args: list[str]) -> None:
    env = {"TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host}
    result = await arelman(*args, env=env)
    assert result.returncode == 2
    assert "unknown release 'nope'" in result.stderr


def test_plan_check_projects_waves_past_windows_and_freezes(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        DEMO.read_text().replace(
            "    after: [finance]\n",
            "    after: [finance]\n"
            "    window: {timezone: Europe/Berlin, days: mon-fri, start: '09:00', end: '17:00'}\n",
        )
        + "freezes:\n  - {start: '2026-11-27T00:00:00Z', end: '2026-11-30T00:00:00Z', "
        "reason: black friday}\n"
    )
    result = relman("plan", "check", str(plan), "--from", "2026-11-26T18:00:00+00:00", "-o", "json")
    assert result.returncode == 0, result.stderr
    schedule = {s["wave"]: s for s in json.loads(result.stdout)["schedule"]}
    # Thursday 18:00 UTC: finance (no window) would start now but for nothing; operations
    # waits past the freeze (Fri-Sun) to Monday 09:00 Berlin = 08:00 UTC.
    assert schedule["finance"]["start"] == "2026-11-26T18:00:00+00:00"
    assert schedule["operations"]["start"] == "2026-11-30T08:00:00+00:00"
    assert schedule["operations"]["held_by"] == "waiting for its window"


def test_plan_check_shows_window_times_in_the_waves_zone_beside_utc(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        DEMO.read_text().replace(
            "    after: [finance]\n",
            "    after: [finance]\n"
            "    window: {timezone: Asia/Tokyo, days: mon-fri, start: '09:00', end: '17:00'}\n",
        )
    )
    # Friday 10:00 UTC is 19:00 in Tokyo: operations waits for Monday 09:00 Tokyo time,
    # which is midnight UTC.
    args = ("plan", "check", str(plan), "--from", "2026-11-27T10:00:00+00:00")
    text = relman(*args)
    assert text.returncode == 0, text.stderr
    [row] = [line for line in text.stdout.splitlines() if line.startswith("│ operations")]
    assert [cell.strip() for cell in row.strip("│").split("│")] == [
        "operations",
        "mon-fri 09:00-17:00 Asia/Tokyo",
        "2026-11-30 09:00 Asia/Tokyo (00:00 UTC)",
        "2026-11-30 09:00 Asia/Tokyo (00:00 UTC)",
        "waiting for its window",
    ]
    as_json = relman(*args, "-o", "json")
    schedule = {s["wave"]: s for s in json.loads(as_json.stdout)["schedule"]}
    operations = schedule["operations"]
    assert (operations["timezone"], operations["start"], operations["start_local"]) == (
        "Asia/Tokyo",
        "2026-11-30T00:00:00+00:00",
        "2026-11-30T09:00:00+09:00",
    )
    # A wave without a window has no zone of its own: UTC alone.
    assert schedule["finance"]["timezone"] is None
    [row] = [line for line in text.stdout.splitlines() if line.startswith("│ finance ")]
    assert [cell.strip() for cell in row.strip("│").split("│")][2] == "2026-11-27 10:00 UTC"


def test_freeze_add_needs_an_offset() -> None:
    result = relman(
        "freeze", "add", "some-release", "--start", "2026-12-20T00:00", "--end",
        "2027-01-04T00:00:00Z", "--reason", "year end", "--as", "alice",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--start: '2026-12-20T00:00' needs a time zone offset" in result.stderr


async def test_operator_controls_through_the_cli(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    _seed(aws)
    plan = tmp_path / "plan.yaml"
    release_id = f"payments-ops-{task_queue[-8:]}"
    plan.write_text(DEMO.read_text().replace("id: payments-2.4.0", f"id: {release_id}"))
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "RELMAN_TASK_QUEUE": task_queue,
        "RELMAN_HOME": str(tmp_path / "home"),
    }
    async with make_worker(dev_env, aws):
        submitting = asyncio.create_task(
            arelman("submit", str(plan), "--wait", "-o", "json", env=env)
        )

        async def started() -> bool:
            out = await arelman("status", release_id, "-o", "json", env=env)
            return out.returncode == 0 and json.loads(out.stdout)["phase"] != "pending"

        assert await _eventually(started)

        outsider = await arelman("pause", release_id, "--reason", "x", "--as", "mallory", env=env)
        assert outsider.returncode == 1
        assert f"mallory may not pause release {release_id}" in outsider.stderr

        paused = await arelman(
            "pause", release_id, "--reason", "incident INC-7", "--as", "alice", env=env
        )
        assert paused.returncode == 0, paused.stderr
        again = await arelman("pause", release_id, "--reason", "x", "--as", "alice", env=env)
        assert again.returncode == 1
        assert f"release {release_id} is already paused" in again.stderr
        st = json.loads((await arelman("status", release_id, "-o", "json", env=env)).stdout)
        assert st["paused"] is True and st["phase"] == "paused"

        resumed = await arelman(
            "resume", release_id, "--reason", "resolved", "--as", "alice", env=env
        )
        assert resumed.returncode == 0, resumed.stderr

        aborted = await arelman(
            "abort", release_id, "--reason", "wrong build", "--as", "alice", env=env
        )
        assert aborted.returncode == 0, aborted.stderr

        async def cancelled() -> dict[str, Any] | None:
            out = await arelman("status", release_id, "-o", "json", env=env)
            data = json.loads(out.stdout)
            return data if data["phase"] == "cancelled" else None

        st = await _eventually(cancelled)
        assert st, "release was not cancelled"
        aborted_event = next(e for e in st["timeline"] if e["kind"] == "aborted")
        assert aborted_event["actor"] == "alice" and aborted_event["comment"] == "wrong build"
        # Nothing had been deployed: every parameter still holds its old value.
        version = aws.client("ssm", "eu-central-1").get_parameter(
            Name="/payments/finance/api/version"
        )
        assert version["Parameter"]["Value"] == "2.3.0"
        # A script waiting on the release learns from the exit code that it did not complete.
        watched = await arelman("status", release_id, "--watch", env=env)
        assert watched.returncode == 1
        assert f"release {release_id} ended cancelled" in watched.stderr
        assert watched.stdout.splitlines()[-1] == f"release {release_id} cancelled"
        # With -o json: one JSON object per line, each event once, the end last.
        watched = await arelman("status", release_id, "--watch", "-o", "json", env=env)
        assert watched.returncode == 1
        lines = [json.loads(line) for line in watched.stdout.splitlines()]
        assert lines[:-1] == st["timeline"]
        assert {k: lines[-1][k] for k in ("release_id", "phase", "finished")} == {
            "release_id": release_id, "phase": "cancelled", "finished": True,
        }  # fmt: skip
        # submit --wait -o json followed it too: the submission, the events, the end; exit 1.
        submitted = await submitting
        assert submitted.returncode == 1
        lines = [json.loads(line) for line in submitted.stdout.splitlines()]
        assert lines[0] == {"release_id": release_id, "checked": True}
        assert any(e.get("kind") == "aborted" for e in lines[1:-1])
        assert lines[-1]["phase"] == "cancelled"
        assert f"error: release {release_id} ended cancelled" in submitted.stderr


async def test_overlapping_release_is_refused_or_queued(
    dev_env: WorkflowEnvironment,
    aws: AwsClients,
    make_worker,
    task_queue: str,
    tmp_path: Path,
) -> None:
    _seed(aws)
    first_id, second_id = f"pay-first-{task_queue[-8:]}", f"pay-second-{task_queue[-8:]}"
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(DEMO.read_text().replace("id: payments-2.4.0", f"id: {first_id}"))
    second.write_text(DEMO.read_text().replace("id: payments-2.4.0", f"id: {second_id}"))
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "RELMAN_TASK_QUEUE": task_queue,
        "RELMAN_HOME": str(tmp_path / "home"),
    }
    async with make_worker(dev_env, aws):
        assert (await arelman("submit", str(first), env=env)).returncode == 0

        async def refused() -> subprocess.CompletedProcess[str] | None:
            out = await arelman("submit", str(second), env=env)
            return out if out.returncode == 1 else None

        out = await _eventually(refused)  # visibility needs a moment to index the first
        assert out is not None, "overlapping release was not refused"
        assert f"running release(s) {first_id} (payments 2.4.0" in out.stderr
        assert "set `queue: true` in the plan" in out.stderr

        second.write_text(second.read_text() + "queue: true\n")
        queued = await arelman("submit", str(second), env=env)
        assert queued.returncode == 0, queued.stderr
        st = json.loads((await arelman("status", second_id, "-o", "json", env=env)).stdout)
        assert st["phase"] == "pending"
        assert any(e["kind"] == "queued" and first_id in e["message"] for e in st["timeline"])

        await arelman("abort", first_id, "--reason", "superseded", "--as", "alice", env=env)

        async def second_at_its_gate() -> bool:
            out = await arelman("status", second_id, "-o", "json", env=env)
            return json.loads(out.stdout)["phase"] == "awaiting_approval"

        assert await _eventually(second_at_its_gate)
        await arelman("abort", second_id, "--reason", "test over", "--as", "alice", env=env)


def test_broken_temporal_profile_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(
        '[profile.default]\naddress = "localhost:7233"\n[profile.default.tls]\n'
        f'client_cert_path = "{tmp_path}/missing.pem"\nclient_key_path = "{tmp_path}/key.pem"\n'
    )
    result = relman("status", "x", env={"TEMPORAL_CONFIG_FILE": str(config)})
    assert result.returncode == 1
    assert "invalid Temporal client configuration" in result.stderr
    assert "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_release_too_large_to_list_its_resources_claims_its_application(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    import yaml

    names = [f"flag-{i}" for i in range(200)]
    big = {
        "id": f"payments-flags-{task_queue[-8:]}", "application": "payments", "version": "2.5.0",
        "requested_by": "alice",
        "targets": [
            {"name": n, "kind": "ssm_parameter", "parameter": f"/payments/flags/{n}", "value": "on"}
            for n in names
        ],
        "waves": [{"name": "flags", "department": "finance", "targets": names,
                   "approval": {"groups": {"finance-cab": 1}}}],
    }  # fmt: skip
    big_plan, small_plan = tmp_path / "big.yaml", tmp_path / "small.yaml"
    big_plan.write_text(yaml.safe_dump(big))
    small_id = f"payments-small-{task_queue[-8:]}"
    small_plan.write_text(DEMO.read_text().replace("id: payments-2.4.0", f"id: {small_id}"))
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "RELMAN_TASK_QUEUE": task_queue,
        "RELMAN_HOME": str(tmp_path / "home"),
    }
    async with make_worker(dev_env, aws):
        submitted = await arelman("submit", str(big_plan), env=env)
        assert submitted.returncode == 0, submitted.stderr

        async def refused() -> subprocess.CompletedProcess[str] | None:
            out = await arelman("submit", str(small_plan), env=env)
            return out if out.returncode == 1 else None

        out = await _eventually(refused)
        assert out is not None, "a release of the same application was not refused"
        assert f"running release(s) {big['id']} (payments 2.5.0" in out.stderr
        await arelman("abort", big["id"], "--reason", "test over", "--as", "alice", env=env)


def test_a_wave_that_can_never_start_is_bad_input_for_check_and_submit(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        DEMO.read_text().replace(
            "    after: [finance]\n",
            "    after: [finance]\n"
            "    window: {timezone: Europe/Berlin, start: '09:00', end: '17:00', "
            "until_date: 2026-11-20}\n",
        )
    )
    checked = relman("plan", "check", str(plan), "--from", "2026-11-26T18:00:00+00:00")
    assert checked.returncode == 2
    # The schedule is still shown; the error names the file, the wave and why.
    assert "operations" in checked.stdout
    assert checked.stderr.strip() == (
        f"error: {plan}: waves[1].window: wave operations can never start: its window never "
        "opens outside freezes within a year"
    )
    # submit refuses before it connects to anything (no Temporal server here).
    submitted = relman("submit", str(plan), env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert submitted.returncode == 2
    assert "waves[1].window: wave operations can never start" in submitted.stderr


async def test_submit_reports_every_preflight_problem_and_changes_nothing(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    _seed(aws)
    release_id = f"payments-preflight-{task_queue[-8:]}"
    text = DEMO.read_text().replace("id: payments-2.4.0", f"id: {release_id}")
    # A function that does not exist, and an alarm nobody created, in the operations wave.
    text = text.replace(
        "targets:\n",
        "targets:\n  - name: checkout\n    kind: lambda_alias\n    function: checkout-missing\n"
        "    alias: live\n    version: '7'\n",
        1,
    ).replace("    targets: [ops-api-version]\n", "    targets: [ops-api-version, checkout]\n"
              "    alarms: [checkout-5xx]\n")  # fmt: skip
    plan = tmp_path / "plan.yaml"
    plan.write_text(text)
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "RELMAN_TASK_QUEUE": task_queue,
        "RELMAN_HOME": str(tmp_path / "home"),
        "RELMAN_POLICY": str(trust.policy_path()),
    }
    async with make_worker(dev_env, aws):
        submitted = await arelman("submit", str(plan), env=env)
        shown = await arelman("status", release_id, "-o", "json", env=env)

    assert submitted.returncode == 2, submitted.stderr
    assert submitted.stdout == ""
    assert submitted.stderr.startswith(
        f"error: {plan}: release {release_id} refused: the AWS preflight found 2 problem(s): "
    )
    assert "targets[0] (checkout): function checkout-missing does not exist" in submitted.stderr
    assert (
        "waves[1].alarms (operations): CloudWatch alarm 'checkout-5xx' does not exist in "
        "us-east-1" in submitted.stderr
    )
    assert f"release id {release_id} is used up" in submitted.stderr
    assert json.loads(shown.stdout)["phase"] == "failed"
    # Nothing changed: every parameter still holds what it held.
    assert (
        aws.client("ssm", "us-east-1").get_parameter(Name="/payments/operations/api/version")[
            "Parameter"
        ]["Value"]
        == "2.3.0"
    )
    assert (
        aws.client("ssm", "eu-central-1").get_parameter(Name="/payments/finance/api/version")[
            "Parameter"
        ]["Value"]
        == "2.3.0"
    )
