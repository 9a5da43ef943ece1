"""A worker beside `relman dev up` uses the stack's AWS, never the machine's, or refuses.

The decision (``worker.dev_stack.stack_worker``) is checked on a recorded stack state; a
real ``python -m worker`` process then runs a release beside a stack recorded as the dev
server and moto of this test session, with the machine's AWS configuration pointing
elsewhere, and the release changes the stack's AWS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.aws import AwsClients
from client.stack import ensure_codec_key, ensure_dev_identities, stack_worker_env
from common.errors import BadInput
from common.stack_state import StackConfig, StackState, write_state
from models.status import ReleasePhase
from tests.client.test_cli import _eventually
from tests.helpers import seed, ssm, wave
from worker import dev_stack
from worker.dev_stack import stack_worker
from workflows.release import ReleaseWorkflow

ROOT = Path(__file__).resolve().parents[2]
AWS = "http://127.0.0.1:4566"


def stack(tmp_path: Path, temporal: str = "127.0.0.1:7233") -> tuple[StackConfig, StackState]:
    config = StackConfig(home=tmp_path / "home")
    return config, StackState(temporal, "http://127.0.0.1:8233", AWS)


def test_the_names_agree_with_the_modules_that_read_them() -> None:
    from activities.aws import ENDPOINT_ENV
    from activities.policy import POLICY_ENV

    assert (dev_stack.ENDPOINT_ENV, dev_stack.POLICY_ENV) == (ENDPOINT_ENV, POLICY_ENV)
    from worker.telemetry import METRICS_ADDRESS_ENV

    assert dev_stack.METRICS_ADDRESS_ENV == METRICS_ADDRESS_ENV


def test_a_worker_of_another_temporal_is_left_as_it_is(tmp_path: Path) -> None:
    config, state = stack(tmp_path)
    env = {"AWS_PROFILE": "prod"}
    assert stack_worker(env, "temporal.example.com:7233", config, state) is None
    assert stack_worker(env, "127.0.0.1:7234", config, state) is None
    assert stack_worker(env, "127.0.0.1:7233", config, None) is None  # no stack recorded


def test_a_worker_of_the_stack_takes_its_aws_and_settings(tmp_path: Path) -> None:
    config, state = stack(tmp_path)
    env = {
        "PATH": "/usr/bin",
        "TEMPORAL_ADDRESS": "localhost:7233",  # the stack's Temporal, spelled otherwise
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": "/home/me/.aws/config",
        "RELMAN_WEBHOOK_ALLOW_NETWORKS": "10.20.0.0/16",
    }
    found = stack_worker(env, "localhost:7233", config, state)
    assert found is not None
    assert found.changes == {
        "AWS_ACCESS_KEY_ID": "relman-local",
        "AWS_CONFIG_FILE": None,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_SECRET_ACCESS_KEY": "relman-local",
        "RELMAN_AWS_ENDPOINT_URL": AWS,
        "RELMAN_CODEC_KEY_FILE": str(config.codec_key_path),
        "RELMAN_DEV_WORKER": "1",
        "RELMAN_POLICY": str(config.dev_policy_path),
        "RELMAN_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/8,::1/128,10.20.0.0/16",
    }
    assert found.ignored == ["AWS_CONFIG_FILE", "AWS_DEFAULT_REGION"]
    assert found.describe() == (
        f"Temporal 127.0.0.1:7233 is the dev stack's ({config.state_path}): AWS calls go to "
        f"its local endpoint {AWS} with local-only credentials (region us-east-1), under its "
        "dev policy and payload key, as its own worker's do; ignoring AWS_CONFIG_FILE, "
        "AWS_DEFAULT_REGION from the environment"
    )


def test_the_stacks_own_worker_changes_nothing(tmp_path: Path) -> None:
    """`relman dev up` starts its worker with this environment: one configuration."""
    config, state = stack(tmp_path)
    env = stack_worker_env(
        {"PATH": "/usr/bin", "AWS_PROFILE": "prod", "RELMAN_AWS_ENDPOINT_URL": "https://x"},
        temporal_address=state.temporal_address,
        aws_endpoint=state.aws_endpoint,
        policy=config.dev_policy_path,
        codec_key=config.codec_key_path,
    )
    found = stack_worker(env, state.temporal_address, config, state)
    assert found is not None and found.changes == {}


def test_settings_that_would_reach_other_aws_are_refused_naming_each(tmp_path: Path) -> None:
    config, state = stack(tmp_path)
    env = {
        "RELMAN_AWS_ENDPOINT_URL": "https://ssm.eu-west-1.amazonaws.com",
        "AWS_PROFILE": "prod",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG",
        "AWS_DEFAULT_REGION": "eu-west-1",  # not a refusal: the stack's region replaces it
    }
    with pytest.raises(BadInput) as refused:
        stack_worker(env, "127.0.0.1:7233", config, state)
    assert str(refused.value) == (
        f"this worker's Temporal (127.0.0.1:7233) is the dev stack's, recorded in "
        f"{config.state_path}: it must use the stack's AWS, the local endpoint {AWS} with "
        "local-only credentials, as the stack's own worker does, and never other AWS. It "
        "will not start with AWS_PROFILE=prod (the stack's worker: unset); "
        "AWS_SECRET_ACCESS_KEY set, value not shown (the stack's worker: its local-only "
        "credentials); RELMAN_AWS_ENDPOINT_URL=https://ssm.eu-west-1.amazonaws.com (the "
        f"stack's worker: {AWS}). Unset them to run beside the dev stack, or point "
        "TEMPORAL_ADDRESS at another Temporal to use other AWS settings"
    )
    assert "wJalrXUtnFEMI" not in str(refused.value)


def test_the_stacks_own_values_however_spelled_are_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = stack(tmp_path)
    monkeypatch.chdir(tmp_path)
    env = {
        "RELMAN_AWS_ENDPOINT_URL": "http://localhost:4566/",
        "RELMAN_POLICY": "home/dev-policy.yaml",  # relative to the working directory
        "AWS_ACCESS_KEY_ID": "relman-local",
    }
    found = stack_worker(env, "127.0.0.1:7233", config, state)
    assert found is not None and found.changes["RELMAN_AWS_ENDPOINT_URL"] == AWS
    for name, other in (
        ("RELMAN_POLICY", "s3://policies/relman.yaml"),
        ("RELMAN_DEV_WORKER", "0"),
        ("AWS_ENDPOINT_URL_SSM", "https://ssm.eu-west-1.amazonaws.com"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/deployer"),
    ):
        with pytest.raises(BadInput, match=f"It will not start with {name}="):
            stack_worker({name: other}, "127.0.0.1:7233", config, state)


def test_the_environment_is_as_it_was_after_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = stack(tmp_path)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/home/me/.aws/config")
    monkeypatch.delenv("RELMAN_DEV_WORKER", raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # conftest's moto credentials
    found = stack_worker(dict(os.environ), "127.0.0.1:7233", config, state)
    assert found is not None
    before = dict(os.environ)
    with found.applied():
        assert os.environ["RELMAN_AWS_ENDPOINT_URL"] == AWS
        assert os.environ["RELMAN_DEV_WORKER"] == "1"
        assert "AWS_CONFIG_FILE" not in os.environ
    assert dict(os.environ) == before


def worker_env(**extra: str) -> dict[str, str]:
    """The test's environment without its AWS and Temporal settings, plus ``extra``."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TEMPORAL_"))
        and k not in ("RELMAN_POLICY", "RELMAN_DEV_WORKER", "RELMAN_AWS_ENDPOINT_URL")
    }
    return {**keep, "RELMAN_METRICS_ADDRESS": "off", **extra}


def test_a_worker_beside_the_stack_refuses_other_aws_before_connecting(tmp_path: Path) -> None:
    config, _ = stack(tmp_path)
    write_state(config, StackState("localhost:1", "http://127.0.0.1:1", AWS))
    done = subprocess.run(
        [sys.executable, "-m", "worker"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=worker_env(
            RELMAN_HOME=str(config.home),
            TEMPORAL_ADDRESS="127.0.0.1:1",  # the recorded stack's, spelled otherwise
            RELMAN_AWS_ENDPOINT_URL="https://ssm.eu-west-1.amazonaws.com",
            AWS_PROFILE="prod",
        ),
        timeout=60,
    )
    assert done.returncode == 2
    assert (
        "It will not start with AWS_PROFILE=prod (the stack's worker: unset); "
        "RELMAN_AWS_ENDPOINT_URL=https://ssm.eu-west-1.amazonaws.com (the stack's worker: "
        f"{AWS})."
    ) in done.stderr
    assert "cannot connect to Temporal" not in done.stderr


async def test_a_worker_beside_the_stack_changes_the_stacks_aws(
    dev_env: WorkflowEnvironment,
    aws: AwsClients,
    moto_endpoint: str,
    task_queue: str,
    tmp_path: Path,
) -> None:
    """`relman worker` next to `relman dev up`, on a laptop whose AWS configuration points at
    a real account: the release it runs changes the stack's moto, as the stack's worker would."""
    config = StackConfig(home=tmp_path / "home")
    ensure_dev_identities(config)
    ensure_codec_key(config)
    address = dev_env.client.service_client.config.target_host
    write_state(config, StackState(address, "http://127.0.0.1:1", moto_endpoint))
    # The machine's own AWS configuration: another region and a profile's credentials file.
    ambient = tmp_path / "aws"
    ambient.mkdir()
    (ambient / "config").write_text("[default]\nregion = eu-west-1\n")
    (ambient / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAREALACCOUNT\naws_secret_access_key = real\n"
    )
    parameter = f"/beside-stack/{uuid.uuid4().hex[:8]}"
    seed(aws, {parameter: "2.3.0"})  # us-east-1, the stack's region
    log = tmp_path / "worker.log"
    env = worker_env(
        RELMAN_HOME=str(config.home),
        RELMAN_TASK_QUEUE=task_queue,
        AWS_CONFIG_FILE=str(ambient / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(ambient / "credentials"),
    )
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        plan = tmp_path / "plan.yaml"
        release_id = f"beside-stack-{uuid.uuid4().hex[:8]}"
        plan.write_text(
            json.dumps(
                {
                    "id": release_id,
                    "application": "payments",
                    "version": "2.4.0",
                    "requested_by": "alice",
                    "targets": [ssm("cfg", parameter, "2.4.0")],
                    "waves": [wave("finance", ["cfg"])],
                }
            )
        )
        # The CLI finds the stack the same way: its state file (signing with its dev keys).
        submitted = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "client.cli", "submit", str(plan), "--as", "alice"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=120,
        )
        assert submitted.returncode == 0, submitted.stderr + log.read_text()
        handle = dev_env.client.get_workflow_handle(release_id)

        async def ended() -> bool:
            st = await handle.query(ReleaseWorkflow.status)
            return st.finished

        assert await _eventually(ended, timeout=60), log.read_text()
        st = await handle.query(ReleaseWorkflow.status)
        assert st.phase == ReleasePhase.COMPLETED, (st.error, log.read_text())
        value = aws.client("ssm", "us-east-1").get_parameter(Name=parameter)["Parameter"]["Value"]
        assert value == "2.4.0"
        assert (
            f"Temporal {address} is the dev stack's ({config.state_path}): AWS calls go to its "
            f"local endpoint {moto_endpoint} with local-only credentials (region us-east-1)"
        ) in log.read_text()
        assert "ignoring AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE" in log.read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
