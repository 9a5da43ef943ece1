"""``relman policy check`` and ``relman policy schema``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from models.dev_policy import dev_policy
from tests.ssh_keys import make_key

ROOT = Path(__file__).resolve().parents[2]


def relman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        cwd=ROOT,
        timeout=120,
    )


def write_dev_policy(tmp_path: Path) -> tuple[Path, str]:
    key = make_key(tmp_path, "bob")
    policy = dev_policy({"alice": make_key(tmp_path, "alice").public, "bob": key.public})
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy.model_dump(mode="json")))
    return path, key.public


def test_policy_check_summarises_a_valid_policy(tmp_path: Path) -> None:
    path, _ = write_dev_policy(tmp_path)
    done = relman("policy", "check", str(path))
    assert done.returncode == 0, done.stderr
    assert f"OK {path}: policy version dev (dev policy)\ndigest sha256:" in done.stdout
    assert "2 people, 4 groups, operators: release-managers" in done.stdout


def test_policy_check_json_carries_the_digest_and_no_key_material(tmp_path: Path) -> None:
    path, public = write_dev_policy(tmp_path)
    done = relman("policy", "check", str(path), "--output", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["valid"], result["version"], result["dev"]) == (True, "dev", True)
    assert result["digest"].startswith("sha256:")
    assert result["people"][1] == {"id": "bob", "name": "Bob", "ssh_keys": 1, "oidc": False}
    assert public.split()[1] not in done.stdout


def test_policy_check_bad_policy_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: '1'\npeople: [{id: bob, name: Bob}]\ngroups: {cab: [bob, zoe]}\n"
        "applications: {'*': {webhook_hosts: ['http://x']}}\n"
    )
    done = relman("policy", "check", str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {path}: applications.*.webhook_hosts[0]: invalid host 'http://x' (a DNS name "
        "such as hooks.example.com, or *.example.com for its subdomains; no scheme, port or "
        "path)"
    ]
    path.write_text("version: '1'\npeople: [{id: bob, name: Bob}]\ngroups: {cab: [bob, zoe]}\n")
    done = relman("policy", "check", str(path))
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"error: {path}: groups.cab[1]: unknown person 'zoe'",
    )


def test_policy_check_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    done = relman("policy", "check", str(tmp_path / "absent.yaml"))
    assert done.returncode == 2
    assert "cannot read policy: No such file or directory" in done.stderr


def test_policy_schema_is_json_schema() -> None:
    done = relman("policy", "schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert schema["title"] == "Policy" and "people" in schema["properties"]
