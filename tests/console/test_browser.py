"""The web console in a real browser: a real OpenID provider (pytest-iam), the console
served by uvicorn in a thread, Debian's Chromium driven by Playwright, a worker on the dev
server reading a policy that lists the console as an attester and people's OIDC identities."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml

from activities.aws import AwsClients
from client import service
from console.app import create_app
from console.settings import ConsoleSettings
from models.signing import plan_digest
from tests import trust
from tests.conftest import free_port
from tests.helpers import (
    TWO_WAVE_BEFORE,
    seed,
    ssm_values,
    start_release,
    two_wave_plan,
    wait_for,
    wait_for_gate,
)
from tests.ssh_keys import SshKey, make_key

CHROMIUM = "/usr/bin/chromium"
CLIENT_ID = "relman-console"
CLIENT_SECRET = "console-test-secret"
# People who sign in through the provider: bob approves finance, mallory is in no group,
# olga operates every release.
SSO_PEOPLE = ("bob", "mallory", "olga")
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@dataclass
class ConsoleUnderTest:
    url: str
    policy: Path
    users: dict[str, Any]
    iam: Any


@pytest.fixture(scope="session")
def attester_key(tmp_path_factory: pytest.TempPathFactory) -> SshKey:
    return make_key(tmp_path_factory.mktemp("console-key"), "console")


@pytest.fixture(scope="session")
def console_under_test(
    iam_server: Any,
    attester_key: SshKey,
    moto_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ConsoleUnderTest]:
    trust.setup()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    client = iam_server.models.Client(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        client_name="relman console",
        redirect_uris=[f"{url}/auth/callback"],
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_basic",
        scope=["openid", "profile", "email"],
    )
    iam_server.backend.save(client)
    # The id_token's audience: the console's client id, checked on every sign-in.
    iam_server.backend.update(client, audience=[client])
    iam_server.backend.save(client)
    users = {
        person: iam_server.random_user(user_name=f"{person}-sso", given_name=person.title())
        for person in SSO_PEOPLE
    }
    issuer = iam_server.url.rstrip("/")
    data = trust.policy_data({p: trust.key_of(p) for p in trust.PEOPLE})
    for entry in data["people"]:
        if entry["id"] in users:
            entry["oidc"] = {"issuer": issuer, "subject": _subject(users[entry["id"]])}
    data["attesters"] = [{"name": "console", "ssh_key": attester_key.public}]
    policy = tmp_path_factory.mktemp("console-policy") / "policy.yaml"
    policy.write_text(yaml.safe_dump(data, sort_keys=False))
    settings = ConsoleSettings(
        public_url=url,
        session_secret="tests-only-session-secret",
        session_lifetime=3600,
        attester_name="console",
        attester_key=attester_key.path,
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            # The console reads targets' current values from the tests' moto, as the worker.
            create_app(settings, policy, aws=AwsClients(endpoint_url=moto_endpoint)),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield ConsoleUnderTest(url, policy, users, iam_server)
    server.should_exit = True
    thread.join(timeout=10)


def _subject(user: Any) -> str:
    """The ``sub`` the provider puts in this user's id_token."""
    return str(user.user_name)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        yield browser
        await browser.close()


async def sign_in(browser: Any, console: ConsoleUnderTest, person: str) -> Any:
    """A new browser context signed in to the console as ``person`` through the provider."""
    user = console.users[person]
    console.iam.login(user)
    console.iam.consent(user)
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{console.url}/approvals")
    await page.click("#sso")
    await page.wait_for_url(f"{console.url}/approvals")
    console.iam.logout()
    return page


def shot(name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"


async def test_an_approver_signs_in_approves_and_the_release_moves(
    console_under_test: ConsoleUnderTest,
    browser: Any,
    dev_env: Any,
    aws: Any,
    activity_executor: Any,
    task_queue: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    console = console_under_test
    monkeypatch.setenv("TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "default")
    seed(aws, TWO_WAVE_BEFORE)
    plan = two_wave_plan()
    async with trust.build_worker_with_policy(
        dev_env, task_queue, aws, activity_executor, console.policy
    ):
        handle = await start_release(
            dev_env.client, plan, task_queue,
            search_attributes=service.start_search_attributes(plan),
            memo={service.PLAN_DIGEST_MEMO: plan_digest(plan)},
        )  # fmt: skip
        await wait_for_gate(handle, "finance")

        page = await sign_in(browser, console, "bob")
        await page.goto(f"{console.url}/approvals")
        gate = page.locator("section.wave", has_text=plan.id)
        await gate.wait_for()
        await page.screenshot(path=shot("approvals"), full_page=True)
        # What the gate will change: the value now, read from AWS, and the plan's new one.
        row = gate.get_by_role("row", name="finance-settlement-engine")
        cells = await row.get_by_role("cell").all_inner_texts()
        assert cells[:2] == [
            "finance-settlement-engine",
            "ssm parameter /payments/finance/settlement/engine",
        ]
        assert cells[2].startswith("ledger-v1 (read ") and cells[3] == "ledger-v2"
        await gate.get_by_label("Comment").fill("CAB-77 ok")
        await gate.get_by_role("button", name="Approve finance").click()
        await page.wait_for_url(f"{console.url}/approvals?message=*")

        status = await wait_for(
            handle, lambda s: [p.wave for p in s.pending_approvals] == ["operations"], 30
        )
        approval = status.waves[0].approvals[0]
        assert (approval.approver, approval.comment) == ("bob", "CAB-77 ok")
        assert ssm_values(aws, ["/payments/finance/settlement/engine"]) == {
            "/payments/finance/settlement/engine": "ledger-v2"
        }
        decided = next(
            e for e in status.timeline if e.evidence and e.evidence.payload.action == "approve"
        )
        assert decided.evidence is not None
        issuer = console.iam.url.rstrip("/")
        assert decided.evidence.payload.attestation() == (
            f"via console, OIDC subject bob-sso from issuer {issuer}"
        )
        # `relman history` says so beside bob's approval, as the workflow recorded it.
        from rich.console import Console

        from client.views import HistoryView

        printed = Console(record=True, width=250)
        HistoryView(await service.history(plan.id, 10)).render(printed)
        lines = printed.export_text().splitlines()
        at = next(i for i, line in enumerate(lines) if "bob approved wave finance" in line)
        assert f"via console, OIDC subject bob-sso from issuer {issuer}" in lines[at + 1]

        # olga operates the application's releases: she gets the operator actions.
        operator = await sign_in(browser, console, "olga")
        await operator.goto(f"{console.url}/releases/{plan.id}")
        await operator.wait_for_selector("#phase")
        assert await operator.locator("#phase").inner_text() == "awaiting_approval"
        # The waves as a graph: a box per wave, its phase in words, an arrow per `after:`.
        graph = operator.get_by_role("img", name="Waves by dependency order")
        await graph.wait_for()
        await graph.get_by_role("link", name="wave operations: awaiting approval").wait_for()
        assert await graph.locator("path.edge").count() == 1
        await operator.get_by_role("heading", name="Operator actions").wait_for()
        await operator.locator("summary", has_text="Pause").click()
        await operator.screenshot(path=shot("release"), full_page=True)
        await page.goto(f"{console.url}/releases?application=payments")
        await page.get_by_role("link", name=plan.id).wait_for()
        await page.screenshot(path=shot("releases"), full_page=True)

        # mallory is in no group: no approve button, and a forged POST gets the CLI's reason.
        outsider = await sign_in(browser, console, "mallory")
        await outsider.goto(f"{console.url}/releases/{plan.id}")
        await outsider.wait_for_selector("#phase")
        assert await outsider.get_by_role("button", name="Approve operations").count() == 0
        assert await outsider.get_by_role("heading", name="Operator actions").count() == 0
        token = await outsider.locator("input[name=csrf_token]").first.get_attribute("value")
        forged = await outsider.request.post(
            f"{console.url}/releases/{plan.id}/decide",
            form={"csrf_token": token or "", "wave": "operations", "decision": "approve"},
            max_redirects=0,
        )
        assert forged.status == 403
        assert "mallory is not in any approver group of wave 'operations' (ops-leads)" in (
            html.unescape(await forged.text())
        )

        # No CSRF token: 403 before anything is sent.
        bare = await outsider.request.post(
            f"{console.url}/releases/{plan.id}/decide",
            form={"wave": "operations", "decision": "approve"},
            max_redirects=0,
        )
        assert bare.status == 403
        assert "CSRF token" in await bare.text()

        # An operator action asks for a reason and a confirmation, and is signed like any.
        pause = operator.locator("form", has=operator.locator("input[value=pause]"))
        await pause.get_by_label("Reason").fill("change freeze call at 16:00")
        await pause.get_by_label("I confirm: pause").check()
        await pause.get_by_role("button", name="Pause").click()
        await operator.wait_for_url(f"{console.url}/releases/{plan.id}?message=*")
        paused = await wait_for(handle, lambda s: s.paused, 30)
        assert any(e.actor == "olga" and "change freeze call" in (e.comment or e.message)
                   for e in paused.timeline)  # fmt: skip
        await handle.terminate("the test ended")


async def test_an_expired_session_is_sent_to_sign_in(
    console_under_test: ConsoleUnderTest, browser: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import console.app as app_module

    page = await sign_in(browser, console_under_test, "olga")
    later = time.time() + 3601
    monkeypatch.setattr(app_module.time, "time", lambda: later)
    await page.goto(f"{console_under_test.url}/approvals")
    assert page.url.startswith(f"{console_under_test.url}/signin?next=")
    assert await page.locator("#sso").count() == 1
