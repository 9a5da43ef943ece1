"""The console's sign-in rules without a browser: the development sign-in exists only under
a dev policy and is labelled, every POST needs the session's CSRF token, pages need a
current session, and sign-in only ever returns to a page of the console."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from console.app import create_app
from console.settings import ConsoleSettings
from models.checks import CheckResult
from models.fleet import InstancePhase, InstanceStatus
from models.jobs import JobPhase, JobStatus
from models.status import (
    ReleasePhase,
    ReleaseStatus,
    TargetPhase,
    TargetStatus,
    WavePhase,
    WaveStatus,
)
from tests.ssh_keys import make_key

# Starlette's test client would rather have httpx2; httpx is what is installed here.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def policy_file(tmp_path: Path, dev: bool) -> Path:
    people = [{"id": p, "name": p.title(), "ssh_keys": [make_key(tmp_path, p).public]}
              for p in ("bob", "dave")]  # fmt: skip
    data = {"version": "t", "dev": dev, "people": people, "groups": {"cab": ["bob"]}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def client(tmp_path: Path, dev: bool = True, lifetime: int = 3600) -> TestClient:
    settings = ConsoleSettings(
        public_url="http://testserver",
        session_secret="tests",
        session_lifetime=lifetime,
        attester_name="console",
        attester_key=None,
        dev_signin=True,
    )
    return TestClient(create_app(settings, policy_file(tmp_path, dev)), follow_redirects=False)


def csrf(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_the_dev_sign_in_is_labelled_and_needs_the_csrf_token(tmp_path: Path) -> None:
    browser = client(tmp_path)
    page = browser.get("/signin?next=/releases").text
    assert "Development sign-in (embedded dev stack only)" in page
    assert "Development stack: dev policy and development sign-in" in page
    refused = browser.post("/signin/dev", data={"person": "bob", "next": "/releases"})
    assert refused.status_code == 403
    assert "CSRF token is missing or stale" in refused.text
    signed_in = browser.post(
        "/signin/dev", data={"person": "bob", "next": "/releases", "csrf_token": csrf(page)}
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/releases")
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie


def test_without_a_dev_policy_there_is_no_dev_sign_in(tmp_path: Path) -> None:
    browser = client(tmp_path, dev=False)
    page = browser.get("/signin").text
    assert "Development sign-in" not in page
    assert browser.post("/signin/dev", data={"person": "bob"}).status_code == 404


@pytest.mark.parametrize("next_url", ["https://evil.example/", "//evil.example/x"])
def test_sign_in_returns_only_to_the_console(tmp_path: Path, next_url: str) -> None:
    browser = client(tmp_path)
    page = browser.get("/signin").text
    done = browser.post(
        "/signin/dev", data={"person": "bob", "next": next_url, "csrf_token": csrf(page)}
    )
    assert done.headers["location"] == "/approvals"


def test_pages_need_a_session_and_a_post_without_one_is_refused(tmp_path: Path) -> None:
    browser = client(tmp_path)
    page = browser.get("/releases?application=payments")
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=/releases%3Fapplication%3Dpayments"
    assert browser.post("/releases/r1/decide", data={}).status_code == 401


def test_the_console_command_refuses_a_dev_sign_in_without_a_dev_policy(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "console", "--dev-signin",
         "--policy", str(policy_file(tmp_path, dev=False))],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("RELMAN_CONSOLE_")},
    )  # fmt: skip
    assert done.returncode == 2
    assert "--dev-signin: only with the embedded stack's dev policy (dev: true)" in done.stderr


# --- the release page: what `relman status` shows, in tables a screen reader can walk ------

AT = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


class Page(HTMLParser):
    """A page's headings, its tables by caption (rows of cell texts, header row included)
    and its paragraphs, whitespace collapsed: the text a person reads."""

    def __init__(self, html: str):
        super().__init__()
        self.headings: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.paragraphs: list[str] = []
        self._text: list[str] | None = None
        self._caption = ""
        self._rows: list[list[str]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "h3", "h4", "caption", "th", "td", "p"):
            self._text = []
        if tag == "table":
            self._caption, self._rows = "", []
        if tag == "tr":
            self._rows.append([])

    def handle_endtag(self, tag: str) -> None:
        if self._text is None or tag not in ("h2", "h3", "h4", "caption", "th", "td", "p"):
            if tag == "table":
                self.tables[self._caption] = self._rows
            return
        text = " ".join("".join(self._text).split())
        self._text = None
        if tag == "caption":
            self._caption = text
        elif tag in ("th", "td"):
            self._rows[-1].append(text)
        elif tag == "p":
            self.paragraphs.append(text)
        else:
            self.headings.append(text)

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def fleet(count: int) -> TargetStatus:
    instances = [
        InstanceStatus(id=f"i-{n:03d}", batch=n // 2 + 1, phase=InstancePhase.DONE,
                       command_id="cmd-1", result="Success", exit_code=0)
        for n in range(count)
    ]  # fmt: skip
    instances[2] = InstanceStatus(id="i-002", batch=2, phase=InstancePhase.FAILED,
                                  command_id="cmd-2", result="Failed", exit_code=3,
                                  error="AWS-RunPatchBaseline: disk full")  # fmt: skip
    instances[3] = InstanceStatus(id="i-003", batch=2, phase=InstancePhase.ROLLED_BACK)
    for instance in instances[4:]:
        instance.phase, instance.command_id, instance.result, instance.exit_code = (
            InstancePhase.PENDING, None, None, None,
        )  # fmt: skip
    return TargetStatus(name="web-fleet", kind="ec2_fleet", resource="ec2 fleet tag:role=web",
                        phase=TargetPhase.FAILED, instances=instances)  # fmt: skip


def release_status(fleet_size: int = 5) -> ReleaseStatus:
    db = WaveStatus(
        name="db", department="finance", phase=WavePhase.FAILED,
        error="job migrate outcome unknown: the wave was cancelled while it ran",
        targets=[
            TargetStatus(name="cfg", kind="ssm_parameter", resource="ssm parameter /cfg",
                         phase=TargetPhase.ROLLED_BACK, before="1.0", after="1.0"),
            TargetStatus(name="api", kind="lambda_alias", resource="lambda alias api:live",
                         phase=TargetPhase.ROLLED_BACK, before="v1"),
        ],
        jobs=[
            JobStatus(name="migrate", kind="ecs_task", at="before the first traffic step",
                      phase=JobPhase.COMPENSATED, outcome_unknown=True,
                      summary="outcome unknown: the wave was cancelled while it ran",
                      compensation="migrate-down", finished_at=AT),
            JobStatus(name="backfill", kind="lambda_job", at="after the 50% step has baked",
                      phase=JobPhase.PENDING, compensation="none"),
            JobStatus(name="warm", kind="ssm_command", at="after the last traffic step",
                      phase=JobPhase.UNKNOWN, outcome_unknown=True,
                      summary="outcome unknown: SSM invocation timed out",
                      error="job warm: outcome unknown (SSM invocation timed out); it may have "
                            "run, so a rollback treats it as applied"),
        ],
    )  # fmt: skip
    web = WaveStatus(
        name="web", department="ops", after=["db"], phase=WavePhase.BAKING, step=1, percent=50,
        targets=[fleet(fleet_size)],
        checks=[
            CheckResult(name="home", kind="http", ok=True, message="GET / -> 200 in 40 ms",
                        at=AT, recent=[True, True]),
            CheckResult(name="p99", kind="metric", ok=False, message="p99 latency 900 > 500 ms",
                        at=AT, recent=[True, False, False]),
            CheckResult(name="smoke", kind="lambda_invoke", ok=False, failed=True,
                        message="smoke returned an error", at=AT, recent=[False, False]),
            CheckResult(name="queue", kind="metric", ok=None, message="no datapoints"),
        ],
    )  # fmt: skip
    return ReleaseStatus(release_id="r1", application="payments", version="2.4.0",
                         requested_by="dave", phase=ReleasePhase.ROLLING_BACK,
                         waves=[db, web])  # fmt: skip


def release_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: ReleaseStatus
) -> Callable[[str], Page]:
    """Bob signed in, reading release r1's pages (``""`` or ``"/live"``) as the worker
    answers ``status`` (as it stands when each page is read)."""
    import console.app as app_module
    from client import service

    async def status_query(release_id: str, *args: object) -> ReleaseStatus:
        assert release_id == "r1"
        return status

    async def no_plan(release_id: str) -> None:
        return None

    monkeypatch.setattr(service, "status", status_query)
    monkeypatch.setattr(app_module, "release_plan", no_plan)
    browser = client(tmp_path)
    token = csrf(browser.get("/signin").text)
    browser.post("/signin/dev", data={"person": "bob", "next": "/", "csrf_token": token})

    def read(path: str) -> Page:
        answer = browser.get(f"/releases/r1{path}")
        assert answer.status_code == 200
        return Page(answer.text)

    return read


def release_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: ReleaseStatus) -> Page:
    return release_pages(tmp_path, monkeypatch, status)("")


def test_the_release_page_shows_a_waves_jobs_and_what_undoes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = release_page(tmp_path, monkeypatch, release_status())
    assert "Jobs of db" in page.headings
    assert page.tables["Job steps in the order the wave runs them, and what undoes each"] == [
        ["Job", "Kind", "Runs", "Phase", "Outcome", "Compensation"],
        ["migrate", "ecs_task", "before the first traffic step",
         "compensated (its outcome was unknown: it may have run)",
         "outcome unknown: the wave was cancelled while it ran (ended 2026-12-05 09:30 UTC)",
         "undone by migrate-down"],
        ["backfill", "lambda_job", "after the 50% step has baked", "pending", "-",
         "compensation: none"],
        ["warm", "ssm_command", "after the last traffic step", "outcome_unknown",
         "job warm: outcome unknown (SSM invocation timed out); it may have run, so a "
         "rollback treats it as applied",
         "no compensation: a rollback stops for an operator"],
    ]  # fmt: skip


def test_a_failed_wave_says_what_became_of_its_targets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = release_status()
    live = release_pages(tmp_path, monkeypatch, status)
    page = live("/live")
    assert "After the failure: its targets were rolled back." in page.paragraphs
    assert page.tables["Targets of db"][1:] == [
        ["cfg", "ssm parameter /cfg", "rolled_back", "0%", "1.0", "1.0"],
        ["api", "lambda alias api:live", "rolled_back", "0%", "v1", "-"],
    ]
    status.waves[0].targets[1].phase = TargetPhase.PENDING
    status.waves[0].targets[1].before = None
    page = live("/live")
    assert "After the failure: cfg rolled back." in page.paragraphs
    # A wave that has not failed needs no note.
    assert not [p for p in page.paragraphs if p.startswith("After the failure")][1:]


def test_a_fleet_lists_its_instances_batch_by_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = release_page(tmp_path, monkeypatch, release_status(fleet_size=5))
    assert "Fleet web-fleet: 1 pending, 2 done, 1 failed, 1 rolled back" in page.headings
    assert page.tables["Instances of web-fleet (5 instance(s) in 3 batch(es))"] == [
        ["Instance", "Batch", "Phase", "Command", "Result", "Error"],
        ["i-000", "1", "done", "cmd-1", "Success, exit 0", "-"],
        ["i-001", "1", "done", "cmd-1", "Success, exit 0", "-"],
        ["i-002", "2", "failed", "cmd-2", "Failed, exit 3", "AWS-RunPatchBaseline: disk full"],
        ["i-003", "2", "rolled back", "-", "-", "-"],
        ["i-004", "3", "pending", "-", "-", "-"],
    ]


def test_a_large_fleet_lists_only_the_instances_worth_a_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = release_page(tmp_path, monkeypatch, release_status(fleet_size=30))
    assert "Fleet web-fleet: 26 pending, 2 done, 1 failed, 1 rolled back" in page.headings
    caption = (
        "Instances of web-fleet (30 instance(s) in 15 batch(es)): only those neither pending "
        "nor done are listed (every instance is, for fleets of up to 20)"
    )
    assert [row[0] for row in page.tables[caption]] == ["Instance", "i-002", "i-003"]


def test_the_release_page_shows_each_checks_last_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = release_page(tmp_path, monkeypatch, release_status())
    assert "Checks of web" in page.headings
    assert page.tables["Each check's last probe (latest while the wave bakes)"] == [
        ["Check", "Kind", "State", "Last probe", "Recent probes", "Message"],
        ["home", "http", "ok", "2026-12-05 09:30 UTC", "0 of the last 2 failed",
         "GET / -> 200 in 40 ms"],
        ["p99", "metric", "failing", "2026-12-05 09:30 UTC", "2 of the last 3 failed",
         "p99 latency 900 > 500 ms"],
        ["smoke", "lambda_invoke", "FAILED", "2026-12-05 09:30 UTC", "2 of the last 2 failed",
         "smoke returned an error"],
        ["queue", "metric", "no data", "-", "-", "no datapoints"],
    ]  # fmt: skip
    # A wave with no checks, jobs or fleet gets none of these sections.
    assert "Checks of db" not in page.headings and "Jobs of web" not in page.headings
