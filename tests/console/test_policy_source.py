"""The console reads the organisation policy where the worker reads it (``RELMAN_POLICY``:
a file, an S3 object or an SSM parameter) with the worker's own reader, and again when it
changes; a policy that stops validating leaves the last good one in force."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from activities.aws import AwsClients
from console.app import create_app
from console.settings import ConsoleSettings
from tests.ssh_keys import make_key

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BUCKET = "relman-policy"


def policy_text(tmp_path: Path, people: tuple[str, ...]) -> str:
    def key(person: str) -> str:
        public = tmp_path / f"{person}.pub"
        return public.read_text().strip() if public.exists() else make_key(tmp_path, person).public

    entries = [{"id": p, "name": p.title(), "ssh_keys": [key(p)]} for p in people]
    return yaml.safe_dump({"version": "-".join(people), "dev": True, "people": entries})


class Store:
    """Writes the policy where ``source`` says, as the platform team would."""

    def __init__(self, aws: AwsClients, kind: str):
        self.aws, self.kind = aws, kind
        if kind == "s3":
            aws.client("s3").create_bucket(Bucket=BUCKET)
            self.source = f"s3://{BUCKET}/relman/policy.yaml"
        else:
            self.source = "ssm:/relman/policy"

    def put(self, text: str) -> None:
        if self.kind == "s3":
            self.aws.client("s3").put_object(Bucket=BUCKET, Key="relman/policy.yaml", Body=text)
        else:
            self.aws.client("ssm").put_parameter(
                Name="/relman/policy", Value=text, Type="SecureString", Overwrite=True
            )


@pytest.mark.parametrize("kind", ["s3", "ssm"])
def test_the_console_reads_the_policy_from_s3_or_ssm_and_again_when_it_changes(
    aws: AwsClients, tmp_path: Path, kind: str
) -> None:
    store = Store(aws, kind)
    store.put(policy_text(tmp_path, ("bob", "dave")))
    now = [1000.0]
    settings = ConsoleSettings(
        public_url="http://testserver", session_secret="tests", session_lifetime=3600,
        attester_name="console", attester_key=None, dev_signin=True,
    )  # fmt: skip
    app = create_app(settings, store.source, aws=aws, clock=lambda: now[0])
    browser = TestClient(app, follow_redirects=False)
    assert 'value="dave">Dave (dave)' in browser.get("/signin").text
    assert "erin" not in browser.get("/signin").text

    store.put(policy_text(tmp_path, ("bob", "dave", "erin")))
    now[0] += 31  # S3 and SSM are read again every 30 s, as the worker reads them
    page = browser.get("/signin").text
    assert 'value="erin">Erin (erin)' in page

    store.put("version: broken\npeople: [{id: 1}]\n")
    now[0] += 31
    assert 'value="erin">Erin (erin)' in browser.get("/signin").text  # the last good one


def test_a_policy_file_is_read_again_when_it_changes(aws: AwsClients, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(tmp_path, ("bob",)))
    now = [1000.0]
    settings = ConsoleSettings(
        public_url="http://testserver", session_secret="tests", session_lifetime=3600,
        attester_name="console", attester_key=None, dev_signin=True,
    )  # fmt: skip
    browser = TestClient(create_app(settings, path, aws=aws, clock=lambda: now[0]))
    assert "Dave (dave)" not in browser.get("/signin").text
    path.write_text(policy_text(tmp_path, ("bob", "dave")))
    now[0] += 2
    assert 'value="dave">Dave (dave)' in browser.get("/signin").text


def console_command(moto_endpoint: str, source: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELMAN_CONSOLE_")}
    env.update(RELMAN_AWS_ENDPOINT_URL=moto_endpoint, RELMAN_AWS_MAX_ATTEMPTS="1")
    return subprocess.run(
        [sys.executable, "-m", "client.cli", "console", "--port", "1", "--policy", source],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def test_the_console_command_refuses_an_unreadable_or_invalid_policy(
    aws: AwsClients, moto_endpoint: str
) -> None:
    missing = console_command(moto_endpoint, "s3://no-such-bucket/policy.yaml")
    assert missing.returncode == 1
    assert "cannot read the organisation policy at s3://no-such-bucket/policy.yaml" in (
        missing.stderr
    )
    aws.client("ssm").put_parameter(
        Name="/relman/broken", Value="version: broken\npeople: [{id: 1}]\n", Type="String"
    )
    broken = console_command(moto_endpoint, "ssm:/relman/broken")
    assert broken.returncode == 2
    assert "organisation policy: ssm:/relman/broken" in broken.stderr
