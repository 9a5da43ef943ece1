"""The console's sign-in rules without a browser: the development sign-in exists only under
a dev policy and is labelled, every POST needs the session's CSRF token, pages need a
current session, and sign-in only ever returns to a page of the console."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from console.app import create_app
from console.settings import ConsoleSettings
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
