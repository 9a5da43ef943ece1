"""Recorded histories of finished releases replay against today's workflow code.

A release lives for days, so a worker running new relman code picks up releases that older
code started and replays their histories. If the new code issues different commands
(another activity, a timer moved, a child started in another order) the replay fails with a
non-determinism error, and so would every release in flight. Such a change must go behind
``workflow.patched()``; this test is what notices when it did not.

``histories/<set>/`` holds, as Temporal's JSON history format, each release's history
(``<release id>.json``) and each of its wave children's (``<release id>.<wave>.<attempt>.json``),
one folder per recording; every set is replayed, each standing for releases that code of
its day left in flight. ``1.4`` was recorded by code that asked ``patched("local-reads")``:
its releases carry that marker and replay through the ``deprecate_patch`` that stands in its
place. ``1.5`` was recorded by the 1.0 baseline, which asks no ``patched()`` (CONTRIBUTING.md).

- ``rel-replay-approved``: a gate approved, a window wait that a freeze added mid-wait
  moves, two traffic steps with a bake, a pause and resume, a gate that escalates and is
  approved by the escalation group; ends ``completed``.
- ``rel-replay-rejected``: a window overridden by on-call, a wave deployed, the next wave
  rejected; its deployed changes rolled back; ends ``rejected``.
- ``rel-replay-failed``: an apply that AWS refuses; every change rolled back newest first;
  ends ``rolled_back``.
- ``rel-replay-alarm``: an alarm fires while a wave bakes, watched by the bake activity;
  the wave's change rolled back; ends ``rolled_back``.
- ``rel-replay-aborted``: a wave deployed, the next one waiting at its gate, an operator
  aborts; ends ``cancelled`` with the deployed change rolled back.
- ``rel-replay-guided``: a wave with ``on_failure: pause`` fails, is retried by an operator,
  fails again and goes on after ``skip-target``; ends ``completed``.

And:

- ``rel-replay-jobs``: a wave with a ``before`` job (an SSM command with a compensating
  one), a Lambda job ``at: 50`` and an ``after`` one around two traffic steps; ends
  ``completed``.
- ``rel-replay-job-undone``: a wave with a ``before`` job deployed, the next wave's apply
  refused; the saga restores the target, then runs the compensating job; ends
  ``rolled_back``.
- ``rel-replay-checked``: an HTTP check (a local server) and a CloudWatch metric check
  pass before the first step and through the bake; ends ``completed``.
- ``rel-replay-check-failed``: an HTTP check passes before the first step and fails during
  the bake; the wave's change rolled back; ends ``rolled_back``.
- ``rel-replay-unchanged``: an alarm already in ALARM stops the wave before it changes
  anything; ends ``failed`` (``nothing-changed-fails``).

Record a new set (after a change released behind ``workflow.patched()``; old sets stay) with::

    RELMAN_RECORD_HISTORIES=<set> .venv/bin/python -m pytest \
        tests/workflows/test_replay.py -k record
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, UpdateWorkflowExecutionLifecycleStage
from temporalio.api.update.v1 import UpdateRef, WaitPolicy
from temporalio.api.workflowservice.v1 import PollWorkflowExecutionUpdateRequest
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.service import RPCError
from temporalio.worker import Replayer

from activities.aws import AwsClients
from client.service import start_search_attributes
from common.codec import data_converter, keys_from_env
from models.jobs import JobPhase
from models.messages import (
    DecisionInput,
    FreezeInput,
    OperatorInput,
    OverrideInput,
    TargetActionInput,
    WaveActionInput,
)
from models.plan import Freeze, ReleasePlan
from models.status import ReleasePhase, ReleaseStatus, WavePhase
from tests import trust
from tests.activities.test_jobs import lambda_job
from tests.activities.test_ssm_commands import launch
from tests.helpers import (
    APPROVER_GROUPS,
    approve,
    assert_replays,
    create_alarm,
    events,
    local,
    make_plan,
    next_weekday,
    reject,
    seed,
    signed_update,
    skip_to,
    ssm,
    start_release,
    status_of,
    wait_for,
    wait_for_gate,
    wave,
)
from tests.workflows.test_jobs import TAGS, command
from workflows.release import ReleaseWorkflow
from workflows.wave import WaveWorkflow

HISTORIES = Path(__file__).parent / "histories"
SCENARIOS = (
    "rel-replay-approved",
    "rel-replay-rejected",
    "rel-replay-failed",
    "rel-replay-alarm",
    "rel-replay-aborted",
    "rel-replay-guided",
)
SCENARIOS_WITH_JOBS_AND_CHECKS = (
    "rel-replay-jobs",
    "rel-replay-job-undone",
    "rel-replay-checked",
    "rel-replay-check-failed",
    "rel-replay-unchanged",
)
ALARM = "replay-5xx"
FIRING = "replay-firing-5xx"
RECORDED = sorted(HISTORIES.rglob("*.json"))
BERLIN = "Europe/Berlin"
OFFICE = {"timezone": BERLIN, "days": "mon-fri", "start": "09:00", "end": "17:00"}
GROUPS = APPROVER_GROUPS | {"on-call": ["olga"], "cfo-office": ["frank"]}
# An SSM name AWS refuses to write ("/aws" is reserved): the apply fails for good.
RESERVED = "/aws/payments/flag"


@pytest.mark.parametrize(
    "path", RECORDED, ids=[str(p.relative_to(HISTORIES).with_suffix("")) for p in RECORDED]
)
async def test_recorded_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    # Histories recorded with the tests' payload key decode with it; older ones are clear.
    replayer = Replayer(
        workflows=[ReleaseWorkflow, WaveWorkflow], data_converter=data_converter(keys_from_env())
    )
    # Raises on a non-determinism error; a failed workflow task would too.
    await replayer.replay_workflow(history)


@pytest.mark.parametrize("folder", sorted({p.parent for p in RECORDED}), ids=lambda f: f.name)
def test_every_scenario_is_recorded_with_its_waves(folder: Path) -> None:
    names = {p.stem for p in folder.glob("*.json")}
    for release in SCENARIOS + SCENARIOS_WITH_JOBS_AND_CHECKS:
        assert release in names
        assert any(n.startswith(f"{release}.") for n in names), f"no wave history of {release}"
    for path in RECORDED:
        last = json.loads(path.read_text())["events"][-1]["eventType"]
        assert last == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED", path.name


async def test_decisions_taken_in_one_workflow_task_replay_as_they_ran(
    dev_env, aws, make_worker, task_queue
) -> None:
    """A worker that comes back finds every decision sent meanwhile in one workflow task:
    their handlers read the policy side by side (local activities that end in any order).
    Replaying the history must give the same release: no non-determinism error, and the
    approvals counted in the order the release recorded them."""
    gate = {"finance-cab": 2}
    release = make_plan(
        [ssm("one", "/replay/together/one", "on"), ssm("two", "/replay/together/two", "on")],
        [wave("w1", ["one"], groups=gate), wave("w2", ["two"], groups=gate)],
    )
    async with make_worker(dev_env, aws):
        handle = await start_release(
            dev_env.client,
            release,
            task_queue,
            search_attributes=start_search_attributes(release),
        )
        await wait_for_gate(handle, "w1", "w2")
        decisions = [
            await trust.signed(handle, ReleaseWorkflow.approve, DecisionInput(wave=w, approver=a))
            for w in ("w1", "w2")
            for a in ("bob", "carol")
        ]
    # No worker runs: Temporal holds each decision until one polls.
    sent = [
        asyncio.create_task(handle.execute_update(ReleaseWorkflow.approve, d, id=f"together-{n}"))
        for n, d in enumerate(decisions)
    ]
    for n in range(len(decisions)):
        await until_admitted(handle, f"together-{n}")
    async with make_worker(dev_env, aws):
        results = await asyncio.gather(*sent)
        assert sorted(r.satisfied for r in results) == [False, False, True, True]
        ran = await status_of(handle)
        await handle.result()
    history = await handle.fetch_history()
    accepted = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted == list(range(accepted[0], accepted[0] + 4)), "not in one workflow task"
    await assert_replays(handle)
    async with make_worker(dev_env, aws):  # a new worker replays it to answer
        replayed = await status_of(handle)
    for w in ("w1", "w2"):
        assert [a.approver for a in replayed.wave(w).approvals] == [
            a.approver for a in ran.wave(w).approvals
        ]


async def until_admitted(handle: WorkflowHandle[Any, Any], update_id: str) -> None:
    """Wait until Temporal holds the Update ``update_id`` of ``handle`` (admitted)."""
    request = PollWorkflowExecutionUpdateRequest(
        namespace=handle._client.namespace,  # noqa: SLF001
        update_ref=UpdateRef(
            workflow_execution=WorkflowExecution(workflow_id=handle.id), update_id=update_id
        ),
        wait_policy=WaitPolicy(
            lifecycle_stage=UpdateWorkflowExecutionLifecycleStage.UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_ADMITTED
        ),
    )
    service = handle._client.workflow_service  # noqa: SLF001
    for _ in range(250):
        with contextlib.suppress(RPCError):  # not sent yet
            await service.poll_workflow_execution_update(request)
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"Temporal never admitted update {update_id}")


# --- recording (RELMAN_RECORD_HISTORIES=<set>) --------------------------------------------------


def plan(
    release_id: str, targets: list[dict[str, Any]], waves: list[dict[str, Any]]
) -> ReleasePlan:
    return make_plan(targets, waves, id=release_id)


async def approved(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    monday, tuesday = saturday + timedelta(days=2), saturday + timedelta(days=3)
    await skip_to(env, local(saturday, "10:00", BERLIN))
    release = plan(
        "rel-replay-approved",
        [ssm("fin", "/replay/fin", "2.4.0"), ssm("ops", "/replay/ops", "2.4.0")],
        [
            wave(
                "finance",
                ["fin"],
                groups={"finance-cab": 1},
                timeout="48h",
                window=OFFICE,
                traffic=[50, 100],
                bake="1h",
            ),
            wave(
                "operations",
                ["ops"],
                after=["finance"],
                approval={
                    "groups": {"ops-leads": 1},
                    "timeout": "24h",
                    "on_timeout": "escalate",
                    "escalate_to": {"cfo-office": 1},
                },
            ),
        ],
    )
    handle = await start_release(env.client, release, queue)
    await wait_for_gate(handle, "finance")
    await approve(handle, "finance", "bob", "numbers reconciled")
    await wait_for(handle, lambda s: s.wave("finance").next_start is not None)
    freeze = Freeze(
        start=local(monday, "00:00", BERLIN), end=local(monday, "10:00", BERLIN), reason="batch"
    )
    await signed_update(
        handle,
        ReleaseWorkflow.add_freeze,
        FreezeInput(actor="olga", reason="batch run", freeze=freeze),
    )
    await wait_for(handle, lambda s: s.wave("finance").next_start == freeze.end)
    await skip_to(env, local(monday, "10:30", BERLIN))
    await wait_for(handle, lambda s: s.wave("finance").percent == 50)
    await signed_update(handle, ReleaseWorkflow.pause, OperatorInput(actor="alice", reason="check"))
    await skip_to(env, local(monday, "12:00", BERLIN))
    await wait_for(handle, lambda s: s.phase == ReleasePhase.PAUSED)
    await signed_update(handle, ReleaseWorkflow.resume, OperatorInput(actor="olga", reason="ok"))
    await skip_to(env, local(tuesday, "14:00", BERLIN))
    await wait_for(handle, lambda s: s.wave("operations").escalated_to != {})
    await approve(handle, "operations", "frank", "CFO sign-off")
    return handle


async def rejected(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    saturday = next_weekday(await env.get_current_time(), "sat", BERLIN)
    await skip_to(env, local(saturday, "10:00", BERLIN))
    release = plan(
        "rel-replay-rejected",
        [ssm("fin", "/replay/fin", "2.4.0"), ssm("ops", "/replay/ops", "2.4.0")],
        [
            wave("finance", ["fin"], groups={"finance-cab": 1}, window=OFFICE),
            wave("operations", ["ops"], after=["finance"], groups={"ops-leads": 1}),
        ],
    )
    handle = await start_release(env.client, release, queue)
    await wait_for_gate(handle, "finance")
    await approve(handle, "finance", "carol")
    await wait_for(handle, lambda s: s.wave("finance").next_start is not None)
    await signed_update(
        handle,
        ReleaseWorkflow.override_window,
        OverrideInput(actor="olga", reason="hotfix", wave="finance"),
    )
    await wait_for_gate(handle, "operations")
    await reject(handle, "operations", "erin", "ops not staffed")
    return handle


async def failed(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    release = plan(
        "rel-replay-failed",
        [
            ssm("a1", "/replay/a1", "new"),
            ssm("b1", "/replay/b1", "new"),
            ssm("b2", RESERVED, "on"),
        ],
        [wave("first", ["a1"]), wave("second", ["b1", "b2"], after=["first"])],
    )
    return await start_release(env.client, release, queue)


async def alarm(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    cloudwatch = aws.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        Namespace="AWS/ApplicationELB",
        MetricName="HTTPCode_Target_5XX_Count",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=10.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="quiet")
    release = plan(
        "rel-replay-alarm",
        [ssm("canary", "/replay/canary", "new")],
        [wave("canary", ["canary"], alarms=[ALARM], bake="1h", bake_interval="1s")],
    )
    handle = await start_release(env.client, release, queue)
    await wait_for(handle, lambda s: s.wave("canary").phase == WavePhase.BAKING)
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="5xx storm")
    return handle


async def aborted(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    release = plan(
        "rel-replay-aborted",
        [ssm("a1", "/replay/a1", "new"), ssm("b1", "/replay/b1", "new")],
        [wave("first", ["a1"]), wave("second", ["b1"], after=["first"], groups={"ops-leads": 1})],
    )
    handle = await start_release(env.client, release, queue)
    await wait_for_gate(handle, "second")
    await signed_update(
        handle, ReleaseWorkflow.abort, OperatorInput(actor="olga", reason="wrong build")
    )
    return handle


async def guided(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    release = plan(
        "rel-replay-guided",
        [ssm("b1", "/replay/b1", "new"), ssm("b2", RESERVED, "on")],
        [wave("second", ["b1", "b2"], on_failure="pause")],
    )
    handle = await start_release(env.client, release, queue)
    paused = lambda s: s.wave("second").phase == WavePhase.PAUSED  # noqa: E731
    await wait_for(handle, paused)
    await signed_update(
        handle,
        ReleaseWorkflow.retry,
        WaveActionInput(actor="olga", reason="try again", wave="second"),
    )
    # Paused again: the retried attempt failed too.
    await wait_for(handle, lambda s: len(events(s, "wave_paused")) == 2 and paused(s))
    await signed_update(
        handle,
        ReleaseWorkflow.skip_target,
        TargetActionInput(actor="olga", reason="reserved name", target="b2"),
    )
    return handle


def migration(at: str | int = "before") -> dict[str, Any]:
    """A job step: an SSM command on the tagged instances, with its compensating command."""
    return {
        "at": at,
        "run": command("migrate", "migrate up"),
        "compensation": command("migrate-down", "migrate down"),
    }


def backfill(name: str, at: str | int, rows: int) -> dict[str, Any]:
    """A job step: the Lambda function ``backfill`` (it returns its payload), asserted."""
    return {
        "at": at,
        "run": {
            "name": name,
            "kind": "lambda_job",
            "function": "backfill",
            "payload": {"rows": rows},
            "assert_path": "$.rows",
        },
        "compensation": "none",
    }


async def ended(handle: WorkflowHandle[Any, Any]) -> ReleaseStatus:
    """The release's status once it has ended."""
    await handle.result()
    return await status_of(handle)


def order(status: ReleaseStatus, *kinds: str) -> list[str]:
    """The timeline's events of ``kinds``, oldest first, as messages."""
    return [e.message for e in status.timeline if e.kind in kinds]


async def jobs(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    release = plan(
        "rel-replay-jobs",
        [ssm("api", "/replay/jobs/api", "new")],
        [
            wave(
                "db",
                ["api"],
                traffic=[50, 100],
                jobs=[migration(), backfill("warm", 50, 3), backfill("backfill", "after", 12)],
            )
        ],
    )
    handle = await start_release(env.client, release, queue)
    status = await ended(handle)
    assert [(j.name, j.phase) for j in status.wave("db").jobs] == [
        ("migrate", JobPhase.SUCCEEDED),
        ("warm", JobPhase.SUCCEEDED),
        ("backfill", JobPhase.SUCCEEDED),
    ]
    # Each job where the plan placed it: before the first step, at 50 %, after the last.
    assert [m.split(":")[0] for m in order(status, "job_succeeded", "traffic_shifted")] == [
        "job migrate",
        "wave db at 50%",
        "job warm",
        "wave db at 100%",
        "job backfill",
    ]
    return handle


async def job_undone(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    release = plan(
        "rel-replay-job-undone",
        [ssm("api", "/replay/jobs/api", "newer"), ssm("edge", RESERVED, "on")],
        [wave("db", ["api"], jobs=[migration()]), wave("edge", ["edge"], after=["db"])],
    )
    handle = await start_release(env.client, release, queue)
    status = await ended(handle)
    # The saga restored the target, then ran the compensating job (newest first).
    assert [j.phase for j in status.wave("db").jobs] == [JobPhase.COMPENSATED]
    assert [e.kind for e in status.timeline if e.kind.endswith(("_restored", "_compensated"))][
        -2:
    ] == ["target_restored", "job_compensated"]
    return handle


def http_check(url: str) -> dict[str, Any]:
    return {"name": "health", "kind": "http", "url": url, "interval": "1s", "timeout": "2s"}


async def checked(env: Any, queue: str, aws: AwsClients, probes: str) -> WorkflowHandle[Any, Any]:
    # moto keeps the data point; the check reads the last five minutes of wall-clock time.
    aws.client("cloudwatch").put_metric_data(
        Namespace="Replay",
        MetricData=[{"MetricName": "LatencyP99", "Value": 120.0, "Timestamp": datetime.now(UTC)}],
    )
    latency = {
        "name": "latency",
        "kind": "metric",
        "metric": {"namespace": "Replay", "name": "LatencyP99", "statistic": "Maximum"},
        "threshold": 500,
        "unit": "ms",
        "interval": "1s",
    }
    release = plan(
        "rel-replay-checked",
        [ssm("eu", "/replay/checks/eu", "new")],
        [wave("eu", ["eu"], bake="3s", checks=[http_check(f"{probes}/healthy"), latency])],
    )
    handle = await start_release(env.client, release, queue)
    status = await ended(handle)
    assert [(c.name, c.ok, c.failed) for c in status.wave("eu").checks] == [
        ("health", True, False),
        ("latency", True, False),
    ]
    return handle


async def check_failed(
    env: Any, queue: str, aws: AwsClients, probes: str
) -> WorkflowHandle[Any, Any]:
    release = plan(
        "rel-replay-check-failed",
        [ssm("eu", "/replay/checks/eu", "newer")],
        [wave("eu", ["eu"], bake="1m", checks=[http_check(f"{probes}/degrading")])],
    )
    handle = await start_release(env.client, release, queue)
    status = await ended(handle)
    assert (status.error or "").startswith("wave eu: check 'health' failed while baking at 100%")
    return handle


async def unchanged(env: Any, queue: str, aws: AwsClients) -> WorkflowHandle[Any, Any]:
    create_alarm(aws, FIRING, "ALARM", "5xx above 10")
    release = plan(
        "rel-replay-unchanged",
        [ssm("canary", "/replay/canary", "new")],
        [wave("canary", ["canary"], alarms=[FIRING])],
    )
    handle = await start_release(env.client, release, queue)
    status = await ended(handle)
    assert events(status, "finished")[-1].message.endswith(
        "nothing was changed, so nothing was rolled back"
    )
    return handle


class Probed(http.server.BaseHTTPRequestHandler):
    """``/healthy`` answers 200; ``/degrading`` 200 the first time, then 503."""

    degrading = 0

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/degrading":
            Probed.degrading += 1
        self.send_response(503 if self.path == "/degrading" and Probed.degrading > 1 else 200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def probe_server() -> Iterator[str]:
    """A local HTTP server for the checks; its base URL (its port is in the histories'
    plans, which replay reads and never probes)."""
    Probed.degrading = 0
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Probed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.mark.skipif(
    not os.environ.get("RELMAN_RECORD_HISTORIES"), reason="set RELMAN_RECORD_HISTORIES=<set>"
)
async def test_record_histories(
    time_skipping_env, aws, moto_endpoint, make_worker, task_queue
) -> None:
    env = time_skipping_env
    seed(aws, {"/replay/fin": "2.3.1", "/replay/ops": "2.3.1", "/replay/a1": "old"})
    seed(aws, {"/replay/jobs/api": "old", "/replay/checks/eu": "old"})
    launch(aws, 2, TAGS)  # the instances the SSM command jobs run on
    lambda_job(aws, moto_endpoint)  # the Lambda function "backfill" the jobs invoke
    folder = HISTORIES / os.environ["RELMAN_RECORD_HISTORIES"]
    folder.mkdir(parents=True, exist_ok=False)  # a set, once recorded, is never rewritten
    with probe_server() as probes:
        expected = {
            approved: "completed",
            rejected: "rejected",
            failed: "rolled_back",
            alarm: "rolled_back",
            aborted: "cancelled",
            guided: "completed",
            jobs: "completed",
            job_undone: "rolled_back",
            partial(checked, probes=probes): "completed",
            partial(check_failed, probes=probes): "rolled_back",
            unchanged: "failed",
        }
        async with make_worker(env, aws):
            for scenario, end in expected.items():
                handle = await scenario(env, task_queue, aws)
                result = await handle.result()
                assert result.phase == end, (handle.id, result.error)
                await write_histories(env, handle, folder)


async def write_histories(env: Any, handle: WorkflowHandle[Any, Any], folder: Path) -> None:
    """The release's history and each of its children's, as ``<workflow id>.json``."""
    history = await handle.fetch_history()
    ids = [handle.id] + [
        e.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
        for e in history.events
        if e.HasField("child_workflow_execution_started_event_attributes")
    ]
    for workflow_id in ids:
        found = await env.client.get_workflow_handle(workflow_id).fetch_history()
        text = json.dumps(json.loads(found.to_json()), indent=1, sort_keys=True)
        # A wave's id is <release>/<wave>/<attempt>: one file name, <release>.<wave>.<attempt>.
        (folder / f"{workflow_id.replace('/', '.')}.json").write_text(text + "\n")
