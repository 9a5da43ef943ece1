"""``relman calendar`` and ``relman report`` end to end: real ``relman`` processes reading
releases that a test worker runs on the dev server (visibility works there), over moto."""

# ruff: noqa: E501 (the expected calendar is a 160-column table, as relman prints it)

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from client.replay import replayed_status
from client.report import short, week_start
from client.service import start_search_attributes
from models.plan import ReleasePlan
from models.status import ReleasePhase, ReleaseStatus
from tests import trust
from tests.client.test_cli import _eventually, arelman, relman
from tests.helpers import approve, create_alarm, make_plan, reject, seed, ssm, wait_for_gate, wave
from workflows.release import ReleaseWorkflow

ALARM = "edge-5xx"


def cli_env(dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        "RELMAN_TASK_QUEUE": task_queue,
        "RELMAN_HOME": str(tmp_path / "home"),
        "RELMAN_POLICY": str(trust.policy_path()),
    }


async def start(client: Client, plan: ReleasePlan, queue: str) -> Any:
    """Start ``plan`` as ``relman submit`` does: with relman's search attributes."""
    return await client.start_workflow(
        ReleaseWorkflow.run,
        await trust.release_input(client, plan),
        id=plan.id,
        task_queue=queue,
        search_attributes=start_search_attributes(plan),
    )


# --- bad input, refused before anything is read ----------------------------------------------


def test_bad_options_exit_2_naming_the_option(tmp_path: Path) -> None:
    for args, error in (
        (["calendar", "--tz", "Mars/Olympus"], "error: --tz: unknown time zone 'Mars/Olympus'\n"),
        (
            ["report", "--since", "soon"],
            "error: --since: invalid value 'soon' (write a duration like 30d or 12h, or a "
            "date like 2026-11-01)\n",
        ),
        (
            ["report", "--chart", str(tmp_path / "weekly.pdf")],
            f"error: --chart: name a .png or .svg file (got '{tmp_path / 'weekly.pdf'}')\n",
        ),
    ):
        result = relman(*args)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", error), args
    too_few = relman("calendar", "--days", "0")
    assert (too_few.returncode, too_few.stdout, too_few.stderr) == (
        2,
        "",
        "Usage: python -m client.cli calendar [OPTIONS]\n"
        "Try 'python -m client.cli calendar --help' for help.\n\n"
        "Error: Invalid value for '--days': Input should be greater than or equal to 1\n",
    )


def test_a_chart_without_matplotlib_names_the_extra_that_brings_it(tmp_path: Path) -> None:
    # A matplotlib that cannot be imported, ahead of the installed one on the path.
    (tmp_path / "matplotlib").mkdir()
    (tmp_path / "matplotlib" / "__init__.py").write_text("raise ImportError('not here')\n")
    result = relman(
        "report", "--chart", str(tmp_path / "weekly.png"), env={"PYTHONPATH": str(tmp_path)}
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        "error: --chart needs matplotlib, which is not installed: pip install 'relman[chart]'\n",
    )


# --- the calendar ----------------------------------------------------------------------------


def calendar_plan(release_id: str, application: str, queue: str, **fields: Any) -> ReleasePlan:
    """finance (gated by finance-cab, 09:00-17:00 Berlin, two steps baking 1h), then
    operations (22:00-02:00 New York): the shape of the calendar's unit tests."""
    prefix = f"/calendar/{queue}/{release_id}"
    return make_plan(
        [ssm("api", f"{prefix}/api", "2.4.0"), ssm("ops", f"{prefix}/ops", "2.4.0")],
        [
            wave(
                "finance",
                ["api"],
                groups={"finance-cab": 1},
                window={
                    "timezone": "Europe/Berlin",
                    "days": "mon-fri",
                    "start": "09:00",
                    "end": "17:00",
                },
                traffic=[50, 100],
                bake="1h",
            ),  # fmt: skip
            wave(
                "operations",
                ["ops"],
                department="operations",
                after=["finance"],
                window={
                    "timezone": "America/New_York",
                    "days": "mon-fri",
                    "start": "22:00",
                    "end": "02:00",
                },
            ),  # fmt: skip
        ],
        id=release_id,
        application=application,
        **fields,
    )


async def test_the_calendar_of_two_releases_waiting_at_their_gates(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    suffix = task_queue[-8:]
    application = f"cal-{suffix}"
    first = calendar_plan(
        f"cal-a-{suffix}",
        application,
        task_queue,
        freezes=[
            {
                "start": "2031-06-04T00:00:00Z",
                "end": "2031-06-05T00:00:00Z",
                "reason": "billing run",
            }
        ],
    )
    second = calendar_plan(f"cal-b-{suffix}", application, task_queue)
    seed(aws, {t.parameter: "2.3.1" for p in (first, second) for t in p.targets})  # type: ignore[union-attr]
    # The CLI shows the organisation's freezes from the policy it reads.
    policy = yaml.safe_load(trust.policy_path().read_text())
    policy["version"] = "tests-calendar"
    policy["freezes"] = [
        {"start": "2031-06-06T16:00:00Z", "end": "2031-06-09T06:00:00Z",
         "reason": "release train, weekend"}
    ]  # fmt: skip
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    env = cli_env(dev_env, task_queue, tmp_path) | {"RELMAN_POLICY": str(tmp_path / "policy.yaml")}
    view = ["--application", application, "--from", "2031-06-02T08:00", "--tz", "Europe/Berlin"]
    async with make_worker(dev_env, aws):
        handles = [await start(dev_env.client, p, task_queue) for p in (first, second)]
        for handle in handles:
            await wait_for_gate(handle, "finance")

        async def both_listed() -> Any:
            out = await arelman("calendar", *view, "--days", "5", "-o", "json", env=env)
            return out if len(json.loads(out.stdout)["waves"]) == 4 else None

        as_json = await _eventually(both_listed)
        as_text = await arelman("calendar", *view, "--days", "5", env=env)
        as_ics = await arelman("calendar", *view, "--days", "5", "-o", "ics", env=env)
        operations = await arelman(
            "calendar", *view, "--department", "operations", "-o", "json", env=env
        )
        # A release no worker answers for is named, and the calendar fails (exit 1).
        idle = calendar_plan(f"cal-c-{suffix}", application, task_queue)
        await start(dev_env.client, idle, f"{task_queue}-idle")

        async def three_listed() -> Any:
            out = await arelman("calendar", *view, "--wait-for-worker", "0", "-o", "json", env=env)
            return out if json.loads(out.stdout)["not_read"] else None

        with_idle = await _eventually(three_listed)

    assert (as_json.returncode, as_json.stderr) == (0, "")
    data = json.loads(as_json.stdout)
    assert (data["from"], data["until"], data["timezone"], data["organisation_policy"]) == (
        "2031-06-02T06:00:00+00:00",
        "2031-06-07T06:00:00+00:00",
        "Europe/Berlin",
        "tests-calendar",
    )
    open_gate = {
        "state": "open",
        "groups": {"finance-cab": 1},
        "approvers": ["bob", "carol"],
        "deadline": None,
    }
    assert [
        (w["release_id"], w["wave"], w["department"], w["phase"], w["start"], w["start_local"],
         w["end"], w["slot_end"], w["gate"], w["held_by"])
        for w in data["waves"]
    ] == [
        (first.id, "finance", "finance", "awaiting_approval", "2031-06-02T07:00:00+00:00",
         "2031-06-02T09:00:00+02:00", "2031-06-02T09:00:00+00:00", "2031-06-02T15:00:00+00:00",
         open_gate, "waiting for its window"),
        (second.id, "finance", "finance", "awaiting_approval", "2031-06-02T07:00:00+00:00",
         "2031-06-02T09:00:00+02:00", "2031-06-02T09:00:00+00:00", "2031-06-02T15:00:00+00:00",
         open_gate, "waiting for its window"),
        (first.id, "operations", "operations", "pending", "2031-06-03T02:00:00+00:00",
         "2031-06-02T22:00:00-04:00", "2031-06-03T02:00:00+00:00", "2031-06-03T06:00:00+00:00",
         None, "after finance"),
        (second.id, "operations", "operations", "pending", "2031-06-03T02:00:00+00:00",
         "2031-06-02T22:00:00-04:00", "2031-06-03T02:00:00+00:00", "2031-06-03T06:00:00+00:00",
         None, "after finance"),
    ]  # fmt: skip
    assert [(f["scope"], f["reason"], f["releases"]) for f in data["freezes"]] == [
        ("release", "billing run", [first.id]),
        ("organisation", "release train, weekend", []),
    ]
    assert [(c["waves"], c["shared"], c["start"], c["end"]) for c in data["conflicts"]] == [
        (
            [
                {"release_id": first.id, "wave": "finance"},
                {"release_id": second.id, "wave": "finance"},
            ],
            ["department finance", "application " + application],
            "2031-06-02T07:00:00+00:00",
            "2031-06-02T15:00:00+00:00",
        ),
        (
            [
                {"release_id": first.id, "wave": "operations"},
                {"release_id": second.id, "wave": "operations"},
            ],
            ["department operations", "application " + application],
            "2031-06-03T02:00:00+00:00",
            "2031-06-03T06:00:00+00:00",
        ),
    ]

    assert (as_text.returncode, as_text.stderr) == (0, "")
    lines = [line.rstrip() for line in as_text.stdout.splitlines()]
    assert lines == EXPECTED_CALENDAR.format(s=suffix, app=application).splitlines()

    assert (as_ics.returncode, as_ics.stderr) == (0, "")
    stamped = re.sub(r"DTSTAMP:\d{8}T\d{6}Z", "DTSTAMP:(now)", as_ics.stdout)
    unfolded = re.sub(r"\r?\n ", "", stamped)
    assert unfolded.splitlines() == EXPECTED_ICS.format(s=suffix, app=application).splitlines()

    assert operations.returncode == 0, operations.stderr
    assert [(w["release_id"], w["wave"]) for w in json.loads(operations.stdout)["waves"]] == [
        (first.id, "operations"),
        (second.id, "operations"),
    ]

    assert with_idle.returncode == 1
    reason = (
        f"no worker answered within 0s: no worker has polled task queue "
        f"'{task_queue}-idle' in the last 5 min"
    )
    assert json.loads(with_idle.stdout)["not_read"] == [{"release_id": idle.id, "reason": reason}]
    assert with_idle.stderr == (
        f"error: could not read 1 running release(s), left out above: {idle.id} ({reason})\n"
    )


EXPECTED_CALENDAR = """\
Change calendar: 5 days from Mon 2031-06-02 08:00 Europe/Berlin (gates assumed to pass at once)
                                                                       Waves still to run
┏━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━┓
┃                    ┃            ┃            ┃                         ┃                        ┃ next opening (wave's   ┃                 ┃                 ┃
┃ release            ┃ wave       ┃ department ┃ gate                    ┃ held by                ┃ time)                  ┃ (Europe/Berlin) ┃ done by         ┃
┡━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━┩
│ cal-a-{s}     │ finance    │ finance    │ open: 1 of finance-cab  │ waiting for its window │ Mon 06-02 09:00        │ Mon 06-02 09:00 │ Mon 06-02 11:00 │
│ {app} 2.4.0 │            │            │ (bob, carol)            │                        │ mon-fri 09:00-17:00    │                 │                 │
│                    │            │            │                         │                        │ Europe/Berlin          │                 │                 │
│ cal-b-{s}     │ finance    │ finance    │ open: 1 of finance-cab  │ waiting for its window │ Mon 06-02 09:00        │ Mon 06-02 09:00 │ Mon 06-02 11:00 │
│ {app} 2.4.0 │            │            │ (bob, carol)            │                        │ mon-fri 09:00-17:00    │                 │                 │
│                    │            │            │                         │                        │ Europe/Berlin          │                 │                 │
│ cal-a-{s}     │ operations │ operations │ -                       │ after finance          │ Mon 06-02 22:00        │ Tue 06-03 04:00 │ Tue 06-03 04:00 │
│ {app} 2.4.0 │            │            │                         │                        │ mon-fri 22:00-02:00    │                 │                 │
│                    │            │            │                         │                        │ America/New_York       │                 │                 │
│ cal-b-{s}     │ operations │ operations │ -                       │ after finance          │ Mon 06-02 22:00        │ Tue 06-03 04:00 │ Tue 06-03 04:00 │
│ {app} 2.4.0 │            │            │                         │                        │ mon-fri 22:00-02:00    │                 │                 │
│                    │            │            │                         │                        │ America/New_York       │                 │                 │
└────────────────────┴────────────┴────────────┴─────────────────────────┴────────────────────────┴────────────────────────┴─────────────────┴─────────────────┘
day (Europe/Berlin)        2  3  4  5  6
cal-a-{s} finance     #  .  *  .  .
cal-a-{s} operations     #  *  .  .
cal-b-{s} finance     #  .  .  .  .
cal-b-{s} operations     #  .  .  .
                           # deploying   . window open   * frozen
                                                Freezes
┏━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━┓
┃ scope        ┃ from                 ┃ until                ┃ reason                 ┃ holds          ┃
┡━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━┩
│ release      │ Wed 2031-06-04 02:00 │ Thu 2031-06-05 02:00 │ billing run            │ cal-a-{s} │
│ organisation │ Fri 2031-06-06 18:00 │ Mon 2031-06-09 08:00 │ release train, weekend │ every release  │
└──────────────┴──────────────────────┴──────────────────────┴────────────────────────┴────────────────┘
Conflicts:
  cal-a-{s} finance and cal-b-{s} finance: department finance and application {app}, Mon 06-02 09:00 to Mon 06-02 17:00
  cal-a-{s} operations and cal-b-{s} operations: department operations and application {app}, Tue 06-03 04:00 to Tue 06-03 08:00
"""

# Unfolded (RFC 5545 3.1): where lines fold depends on the length of the ids.
EXPECTED_ICS = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//relman//change calendar//EN
CALSCALE:GREGORIAN
METHOD:PUBLISH
X-WR-CALNAME:relman change calendar
BEGIN:VEVENT
UID:cal-a-{s}.finance@relman
DTSTAMP:(now)
DTSTART:20310602T070000Z
DTEND:20310602T150000Z
SUMMARY:{app} 2.4.0: wave finance (finance)
DESCRIPTION:release cal-a-{s} of {app} 2.4.0\\ndepartment finance\\nwindow mon-fri 09:00-17:00 Europe/Berlin\\ngate open: 1 of finance-cab (bob\\, carol)\\nheld by waiting for its window\\nconflicts with cal-b-{s} finance (department finance and application {app})
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:cal-b-{s}.finance@relman
DTSTAMP:(now)
DTSTART:20310602T070000Z
DTEND:20310602T150000Z
SUMMARY:{app} 2.4.0: wave finance (finance)
DESCRIPTION:release cal-b-{s} of {app} 2.4.0\\ndepartment finance\\nwindow mon-fri 09:00-17:00 Europe/Berlin\\ngate open: 1 of finance-cab (bob\\, carol)\\nheld by waiting for its window\\nconflicts with cal-a-{s} finance (department finance and application {app})
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:cal-a-{s}.operations@relman
DTSTAMP:(now)
DTSTART:20310603T020000Z
DTEND:20310603T060000Z
SUMMARY:{app} 2.4.0: wave operations (operations)
DESCRIPTION:release cal-a-{s} of {app} 2.4.0\\ndepartment operations\\nwindow mon-fri 22:00-02:00 America/New_York\\ngate none\\nheld by after finance\\nconflicts with cal-b-{s} operations (department operations and application {app})
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:cal-b-{s}.operations@relman
DTSTAMP:(now)
DTSTART:20310603T020000Z
DTEND:20310603T060000Z
SUMMARY:{app} 2.4.0: wave operations (operations)
DESCRIPTION:release cal-b-{s} of {app} 2.4.0\\ndepartment operations\\nwindow mon-fri 22:00-02:00 America/New_York\\ngate none\\nheld by after finance\\nconflicts with cal-a-{s} operations (department operations and application {app})
CATEGORIES:relman,wave
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:freeze-6498f5b54259dff0@relman
DTSTAMP:(now)
DTSTART:20310604T000000Z
DTEND:20310605T000000Z
SUMMARY:Release freeze: billing run
DESCRIPTION:no deployment step starts\\; holds cal-a-{s}
CATEGORIES:relman,freeze
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:freeze-a79f4dc93c8560c8@relman
DTSTAMP:(now)
DTSTART:20310606T160000Z
DTEND:20310609T060000Z
SUMMARY:Organisation freeze: release train\\, weekend
DESCRIPTION:no deployment step starts\\; holds every release
CATEGORIES:relman,freeze
TRANSP:TRANSPARENT
END:VEVENT
END:VCALENDAR
"""


# --- the report ------------------------------------------------------------------------------


def report_plan(queue: str, name: str, application: str, **edge: Any) -> ReleasePlan:
    """finance gated by finance-cab; with ``edge``, an operations wave after it."""
    prefix = f"/report/{queue}/{name}"
    targets = [ssm("api", f"{prefix}/api", "2.4.0")]
    waves = [wave("finance", ["api"], groups={"finance-cab": 1})]
    if edge:
        targets.append(ssm("edge", f"{prefix}/edge", "2.4.0"))
        waves.append(wave("edge", ["edge"], department="operations", after=["finance"], **edge))
    return make_plan(targets, waves, id=f"{name}-{queue[-8:]}", application=application)


async def test_the_report_of_a_completed_a_rolled_back_and_a_rejected_release(
    dev_env: WorkflowEnvironment, aws: AwsClients, make_worker, task_queue: str, tmp_path: Path
) -> None:
    application = f"rep-{task_queue[-8:]}"
    completed = report_plan(task_queue, "done", application)
    rolled_back = report_plan(task_queue, "broken", application, alarms=[ALARM])
    rejected = report_plan(task_queue, "refused", application)
    plans = (completed, rolled_back, rejected)
    seed(aws, {t.parameter: "2.3.1" for p in plans for t in p.targets})  # type: ignore[union-attr]
    create_alarm(aws, ALARM, "ALARM", "5xx storm")
    env = cli_env(dev_env, task_queue, tmp_path)
    chart = tmp_path / "weekly.svg"

    async def run(plan: ReleasePlan, approver: str, approves: bool) -> None:
        handle = await start(dev_env.client, plan, task_queue)
        await wait_for_gate(handle, "finance")
        await (approve if approves else reject)(handle, "finance", approver)
        await handle.result()

    async with make_worker(dev_env, aws):
        await asyncio.gather(
            run(completed, "bob", True),
            run(rolled_back, "carol", True),
            run(rejected, "bob", False),
        )

    async def all_three() -> Any:
        out = await arelman("report", "--application", application, "--since", "1h", "-o",
                            "json", "--chart", str(chart), env=env)  # fmt: skip
        return out if json.loads(out.stdout)["releases"] == 3 else None

    as_json = await _eventually(all_three)
    as_text = await arelman("report", "--application", application, "--since", "1h", env=env)

    # What each release recorded, read back here: the ground truth the figures come from.
    truth = {}
    for plan in (completed, rolled_back, rejected):
        described = await dev_env.client.get_workflow_handle(plan.id).describe()
        status = await replayed_status(dev_env.client, plan.id)
        truth[plan.id] = (described.start_time, described.close_time, status)
    start_done, end_done, done = truth[completed.id]
    assert start_done is not None and end_done is not None
    lead = end_done - start_done
    approval_lead = end_done - done.wave("finance").approvals[0].at
    broken: ReleaseStatus = truth[rolled_back.id][2]
    assert broken.phase == ReleasePhase.ROLLED_BACK
    [failed] = [e for e in broken.timeline if e.kind == "wave_failed"]
    [restored] = [e for e in broken.timeline if e.kind == "rollback_finished"]

    def gate_wait(status: ReleaseStatus) -> timedelta:
        [opened] = [e for e in status.timeline if e.kind == "wave_awaiting_approval"]
        return status.wave("finance").approvals[0].at - opened.at

    waits = sorted([gate_wait(done), gate_wait(broken)])

    def seconds(value: timedelta) -> float:
        return round(value.total_seconds(), 3)

    assert (as_json.returncode, as_json.stderr) == (0, "")
    data = json.loads(as_json.stdout)
    assert {k: data[k] for k in ("application", "department", "releases", "outcomes")} == {
        "application": application,
        "department": None,
        "releases": 3,
        "outcomes": {"completed": 1, "rejected": 1, "rolled_back": 1},
    }
    assert data["deployment_frequency"]["completed"] == 1
    assert data["lead_time"] == {
        "submitted_to_completed": {
            "count": 1,
            "p50_seconds": seconds(lead),
            "p90_seconds": seconds(lead),
        },
        "first_approval_to_completed": {
            "count": 1,
            "p50_seconds": seconds(approval_lead),
            "p90_seconds": seconds(approval_lead),
        },
    }
    assert data["change_failure_rate"] == {"failures": 1, "deployments": 2, "rate": 0.5}
    restore = restored.at - failed.at
    assert data["time_to_restore"] == {
        "count": 1,
        "p50_seconds": seconds(restore),
        "p90_seconds": seconds(restore),
    }
    assert data["approval_wait"] == [
        {
            "group": "finance-cab",
            "count": 2,
            "p50_seconds": seconds(waits[0]),
            "p90_seconds": seconds(waits[1]),
            "unanswered": 1,  # the rejected release's gate
        }
    ]
    assert [w for w in data["weekly"] if w["completed"] or w["failures"]] == [
        {
            "week": week_start(end_done).date().isoformat(),
            "completed": 1,
            "failures": 1,
            "change_failure_rate": 0.5,
            "lead_time_p50_seconds": seconds(lead),
            "time_to_restore_p50_seconds": seconds(restore),
        }
    ]
    assert data["timelines"] == {
        "read": 3,
        "of": 3,
        "limit": 200,
        "event_limit": 5000,
        "not_read": [],
    }
    assert data["chart"] == str(chart)
    assert ">relman releases " in chart.read_text()

    assert (as_text.returncode, as_text.stderr) == (0, "")
    lines = as_text.stdout.splitlines()
    assert lines[0].startswith("Release report: ")
    assert lines[0].endswith(f" UTC (1h), application {application}")
    assert lines[1] == "3 release(s): 1 completed, 1 rejected, 1 rolled_back"
    rows = {
        cells[0]: cells[1:]
        for line in lines
        if (cells := [c.strip() for c in line.strip("│").split("│")]) and len(cells) > 2
    }
    assert rows["deployment frequency"][1] == "visibility"
    assert rows["lead time, submitted -> completed"] == [
        f"p50 {short(lead)}, p90 {short(lead)} (1)",
        "visibility",
    ]
    assert rows["lead time, first approval -> completed"] == [
        f"p50 {short(approval_lead)}, p90 {short(approval_lead)} (1)",
        "timelines (3)",
    ]
    assert rows["change failure rate"] == ["50.0% (1 of 2 deployments)", "visibility"]
    assert rows["time to restore, alarm -> rolled back"] == [
        f"p50 {short(restore)}, p90 {short(restore)} (1)",
        "timelines (3)",
    ]
    assert rows["finance-cab"] == ["2", short(waits[0]), short(waits[1]), "1"]
    assert lines[-1] == (
        "timelines read: 3 of 3 (at most the 200 most recently ended, histories of at most "
        "5000 events)"
    )
