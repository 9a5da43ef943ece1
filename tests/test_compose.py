"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

No Docker runs on the machines that run this suite, so these tests read the files and hold
them to what `docker compose up` needs to work and to stay safe: every service present,
every pulled image pinned to a version, ports on loopback only, a health check on every
long-running service, dependencies that wait on health or completion, relman's search
attributes registered exactly as the code uses them, a worker command the CLI really has,
no secret in the files, and a Dockerfile that builds from files that exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from client.cli import app
from client.stack import SEARCH_ATTRIBUTE_TYPES
from common.stack_state import DEV_POLICY_FILE

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()

# Services that run once and exit 0; everything else runs for as long as the stack does.
ONE_SHOT = {"temporal-schema", "temporal-init"}
EXPECTED = ONE_SHOT | {
    "postgresql",
    "temporal",
    "temporal-ui",
    "moto",
    "jaeger",
    "relman-worker",
    "relman-console",
}
WORKER = "relman-worker"
# A pulled image's tag must name a release: 16.13, 1.31.2, 3.11.15-slim-trixie.
VERSION_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?([.-][A-Za-z0-9.]+)*$")
# Names of settings whose values are secrets; their values must come from the environment.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|PWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE", re.I)
# "${NAME}" or "${NAME:?message}": a reference with no default baked into the file.
ENV_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(:?\?[^}]*)?\}$")


def long_running() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in SERVICES.items() if name not in ONE_SHOT}


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of compose's two spellings."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def env_file(path: str) -> dict[str, str]:
    lines = (ROOT / path).read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {k.strip(): v.strip() for k, v in pairs}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must be a mapping with conditions, not a list"
    return deps


def split_image(image: str) -> tuple[str, str | None]:
    """``repo[:tag]`` -> (repo, tag); a registry's port is not a tag."""
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return image, None
    return name, tag


# --- compose: services and images --------------------------------------------------------------


def test_the_stack_has_every_service() -> None:
    assert set(SERVICES) == EXPECTED


# The console runs the worker's image, built from ./Dockerfile.
@pytest.mark.parametrize("name", sorted(EXPECTED - {WORKER, "relman-console"}))
def test_pulled_images_are_pinned_to_a_version(name: str) -> None:
    image = SERVICES[name]["image"]
    repo, tag = split_image(image)
    assert "$" not in image, f"{name}: a variable tag can float: {image}"
    assert tag is not None, f"{name}: {image} has no tag (means latest)"
    assert VERSION_TAG.match(tag), f"{name}: {image} is not pinned to a release"


def test_the_worker_is_built_from_the_dockerfile() -> None:
    worker = SERVICES[WORKER]
    assert worker["build"] in (".", {"context": "."})
    assert (ROOT / "Dockerfile").is_file()


def test_server_and_admin_tools_are_the_same_release() -> None:
    # The schema job (admin-tools) migrates the database for the server it runs with.
    server_tag = split_image(SERVICES["temporal"]["image"])[1]
    for name in ONE_SHOT:
        assert split_image(SERVICES[name]["image"]) == ("temporalio/admin-tools", server_tag)


# --- compose: ports, health checks, dependencies -------------------------------------------------


def published_ports() -> list[tuple[str, Any]]:
    return [(name, port) for name, s in SERVICES.items() for port in s.get("ports", [])]


@pytest.mark.parametrize("name,port", published_ports())
def test_ports_bind_to_loopback(name: str, port: Any) -> None:
    if isinstance(port, dict):
        assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
    else:
        assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is reachable from outside"


def test_postgres_is_not_published_and_keeps_its_data_in_a_named_volume() -> None:
    postgres = SERVICES["postgresql"]
    assert "ports" not in postgres
    volume = next(v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data"))
    assert volume.split(":")[0] in COMPOSE["volumes"]


@pytest.mark.parametrize("name", sorted(EXPECTED - ONE_SHOT))
def test_long_running_services_have_a_health_check_and_restart(name: str) -> None:
    service = SERVICES[name]
    check = service.get("healthcheck") or {}
    assert check.get("test") and not check.get("disable"), f"{name} has no health check"
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert service.get("restart") == "unless-stopped"


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_services_run_once(name: str) -> None:
    # A one-shot that restarts never counts as completed for the services waiting on it.
    assert SERVICES[name].get("restart") == "no"
    assert "healthcheck" not in SERVICES[name]


def test_dependencies_wait_on_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for dep, spec in depends_on(service).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{name} waits on {dep}'s health"
            elif condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for long-running {dep} to exit"
            else:
                pytest.fail(f"{name} -> {dep}: condition {condition!r} does not wait")


def test_dependencies_have_no_cycle_and_reach_everything_from_the_worker() -> None:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        for dep in depends_on(SERVICES[name]):
            visit(dep, (*path, name))
        if name not in order:
            order.append(name)

    visit(WORKER, ())
    # The worker needs the whole chain: database, schema, server, namespace, AWS, tracing.
    assert set(order) == EXPECTED - {"temporal-ui", "relman-console"}


def test_bind_mounted_paths_exist() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


@pytest.mark.parametrize("name", sorted(ONE_SHOT))
def test_one_shot_scripts_exist_and_parse(name: str) -> None:
    service = SERVICES[name]
    assert service["entrypoint"] == ["/bin/sh"]
    (script,) = service["command"]
    mounts = dict(v.split(":")[1::-1] for v in service["volumes"])  # target -> source
    target = next(t for t in mounts if script.startswith(t + "/"))
    path = ROOT / mounts[target] / script[len(target) + 1 :]
    assert path.is_file(), f"{name} runs {script}, which is not in the repository"
    text = path.read_text()
    assert text.startswith("#!/bin/sh") and "set -eu" in text
    if shutil.which("sh"):
        assert subprocess.run(["sh", "-n", str(path)], capture_output=True).returncode == 0


# --- compose: what relman needs ------------------------------------------------------------------


def test_registered_search_attributes_are_the_ones_relman_uses() -> None:
    init = environment(SERVICES["temporal-init"])
    registered = dict(pair.split("=") for pair in init["RELMAN_SEARCH_ATTRIBUTES"].split())
    assert registered == SEARCH_ATTRIBUTE_TYPES


def test_worker_command_is_a_relman_command() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    command = SERVICES[WORKER]["command"]
    assert command[0] in commands, f"`relman {command[0]}` does not exist"
    assert command == ["worker"]


def test_worker_talks_to_the_stack() -> None:
    worker = SERVICES[WORKER]
    env = environment(worker)
    for path in worker.get("env_file", []):
        env = env_file(path) | env

    def container_port(service: str) -> set[str]:
        return {str(p).rsplit(":", 1)[-1] for p in SERVICES[service].get("ports", [])}

    host, port = env["TEMPORAL_ADDRESS"].split(":")
    assert host == "temporal" and port in container_port("temporal")
    aws = re.fullmatch(r"http://([\w-]+):(\d+)", env["RELMAN_AWS_ENDPOINT_URL"])
    assert aws and aws.group(1) == "moto" and aws.group(2) in container_port("moto")
    # Spans to Jaeger's OTLP/HTTP receiver; a signal's own endpoint is used as given.
    assert env["OTEL_TRACES_EXPORTER"] == "otlp" and env["OTEL_SERVICE_NAME"]
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://jaeger:4318/v1/traces"
    # Jaeger takes no metrics: no OTLP endpoint for every signal, metrics exporter off.
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env and env["OTEL_METRICS_EXPORTER"] == "none"


def test_worker_reads_the_policy_from_a_read_only_mount() -> None:
    # A worker without RELMAN_POLICY refuses to start (worker.main.worker_policy_source).
    worker = SERVICES[WORKER]
    env = environment(worker)
    default = re.fullmatch(r"\$\{RELMAN_COMPOSE_POLICY:-(/[^}]+)\}", env["RELMAN_POLICY"])
    assert default, f"RELMAN_POLICY: {env['RELMAN_POLICY']}"
    mounts = {v.split(":")[1]: v for v in worker["volumes"]}  # target -> volume
    target = next(t for t in mounts if default.group(1).startswith(t + "/"))
    source, _, mode = mounts[target].split(":")
    assert (source, mode) == ("./deploy/policy", "ro")
    # By default the dev policy deploy/dev_policy.py writes there, which only a dev worker
    # accepts, as the embedded stack's worker is one.
    assert Path(default.group(1)).name == DEV_POLICY_FILE
    assert env["RELMAN_DEV_WORKER"] == "${RELMAN_DEV_WORKER:-1}"
    script = (ROOT / "deploy/dev_policy.py").read_text()
    assert 'MOUNTED = ROOT / "deploy" / "policy"' in script


def test_the_worker_encrypts_payloads_with_the_key_written_beside_the_policy(
    tmp_path: Path,
) -> None:
    from common.codec import keys_from_env
    from deploy.dev_policy import CODEC_KEY
    from deploy.dev_policy import main as write_dev_files

    worker = SERVICES[WORKER]
    env = environment(worker)
    default = re.fullmatch(
        r"\$\{RELMAN_COMPOSE_CODEC_KEY_FILE:-(/[^}]+)\}", env["RELMAN_CODEC_KEY_FILE"]
    )
    assert default, f"RELMAN_CODEC_KEY_FILE: {env['RELMAN_CODEC_KEY_FILE']}"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in worker["volumes"]}
    assert mounts[str(Path(default.group(1)).parent)] == "./deploy/policy"
    assert Path(default.group(1)).name == CODEC_KEY

    # What deploy/dev_policy.py writes: the host's key and the worker's copy are one key.
    home, mounted = tmp_path / "home", tmp_path / "mounted"
    mounted.mkdir()
    write_dev_files(home, mounted)
    host = keys_from_env({"RELMAN_CODEC_KEY_FILE": str(home / CODEC_KEY)})
    container = keys_from_env({"RELMAN_CODEC_KEY_FILE": str(mounted / CODEC_KEY)})
    assert host is not None and container is not None and host.keys == container.keys
    assert (home / CODEC_KEY).stat().st_mode & 0o077 == 0  # the host's own stays private
    write_dev_files(home, mounted)  # a second run keeps the key: releases stay readable
    again = keys_from_env({"RELMAN_CODEC_KEY_FILE": str(mounted / CODEC_KEY)})
    assert again is not None and again.keys == host.keys


def test_the_console_reads_what_the_worker_reads_and_takes_its_settings_from_env() -> None:
    import shlex

    from console import settings

    console, worker = SERVICES["relman-console"], SERVICES[WORKER]
    env, worker_env = environment(console), environment(worker)
    # One policy setting (file, S3 or SSM), the same mount, payload key and AWS settings.
    for name in ("RELMAN_POLICY", "RELMAN_CODEC_KEY_FILE", "TEMPORAL_ADDRESS"):
        assert env[name] == worker_env[name], name
    assert console["volumes"] == worker["volumes"]
    assert console["env_file"] == worker["env_file"]
    # Every setting the console reads comes from .env, secrets with no default in the file.
    names = [getattr(settings, n) for n in dir(settings) if n.endswith("_ENV")]
    assert sorted(n for n in env if n.startswith("RELMAN_CONSOLE_")) == sorted(names)
    for name in (settings.CLIENT_SECRET_ENV, settings.SESSION_SECRET_ENV):
        assert env[name] == f"${{{name}}}", name
    example = env_file("deploy/.env.example")
    assert all(n in example for n in env if n.startswith("RELMAN_CONSOLE_"))
    # The port it listens on is the one published (on loopback) and health-checked.
    command = console["command"]
    port = command[command.index("--port") + 1]
    assert console["ports"] == [f"127.0.0.1:${{RELMAN_STACK_CONSOLE_PORT:-{port}}}:{port}"]
    assert f"127.0.0.1:{port}/signin" in shlex.join(console["healthcheck"]["test"])
    assert "--behind-proxy" in command


def test_worker_health_check_is_the_script_the_image_carries() -> None:
    test = SERVICES[WORKER]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    destinations = {args.split()[-1] for kind, args in dockerfile() if kind == "COPY"}
    assert test[2] in destinations


# --- no secrets ----------------------------------------------------------------------------------


def test_no_secret_is_written_into_the_compose_file() -> None:
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert ENV_REFERENCE.match(value), f"{name}: {key} must be a ${{VAR}} reference"
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY", text)


def test_the_postgres_password_has_to_be_supplied() -> None:
    # `:?` makes compose refuse to start without it rather than fall back to a known value.
    for name in ("postgresql", "temporal-schema", "temporal"):
        values = [v for k, v in environment(SERVICES[name]).items() if SECRET_NAME.search(k)]
        assert values and all(v.startswith("${POSTGRES_PASSWORD:?") for v in values), name
    assert "POSTGRES_PASSWORD=" in (ROOT / "deploy/.env.example").read_text()


def test_placeholder_aws_credentials_only_ever_reach_moto() -> None:
    for path in SERVICES[WORKER].get("env_file", []):
        env = env_file(path)
        if any(SECRET_NAME.search(k) for k in env):
            assert env.get("RELMAN_AWS_ENDPOINT_URL", "").startswith("http://moto:"), path


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(kind.upper(), args) for kind, args in pairs]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (kind, _) in enumerate(instructions) if kind == "FROM")
    return instructions[last_from:]


def copied_sources() -> list[str]:
    sources = []
    for kind, args in dockerfile():
        words = args.split()
        if kind == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[:-1] if not w.startswith("--")]
    return sources


def test_base_images_are_pinned_python_311() -> None:
    stages = {args.split()[-1] for kind, args in dockerfile() if kind == "FROM" and " AS " in args}
    for kind, args in dockerfile():
        if kind != "FROM" or args.split()[0] in stages:
            continue
        repo, tag = split_image(args.split()[0])
        assert repo == "python" and tag is not None, args
        assert re.match(r"3\.11\.\d+-slim", tag), f"base image not pinned: {args}"


@pytest.mark.parametrize("source", copied_sources())
def test_every_copied_file_exists_and_reaches_the_build(source: str) -> None:
    path = ROOT / source
    assert path.exists(), f"Dockerfile copies {source}, which is not in the repository"
    files = [path] if path.is_file() else [p for p in path.rglob("*.py")]
    assert files, f"{source} is empty"
    for file in files:
        rel = file.relative_to(ROOT).as_posix()
        assert not dockerignored(rel), f".dockerignore keeps {rel} out of the build"


def test_the_image_holds_every_package_pyproject_declares() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {s.rstrip("/") for s in copied_sources()}
    assert packages <= copied
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied


def test_the_image_runs_relman_worker_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [args for kind, args in stage if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("ENTRYPOINT", '["relman"]') in stage and ("CMD", '["worker"]') in stage
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["relman"] == "client.cli:main"


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".env",
        ".relman/stack.json",
        "tests/conftest.py",
        ".git/HEAD",
        "client/__pycache__/cli.cpython-311.pyc",
        "deploy/.env.example",
    ],
)
def test_local_state_and_secrets_stay_out_of_the_build(path: str) -> None:
    assert dockerignored(path)


def dockerignored(path: str) -> bool:
    """Whether Docker's .dockerignore rules keep ``path`` out of the build context.

    Enough of Docker's rules for this repository's file: patterns in order, the last match
    wins, ``!`` re-includes, a pattern matching a parent directory matches its contents,
    ``*`` stays within one path segment and ``**`` spans any number of them.
    """
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.compile(_glob_regex(pattern))
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def _glob_regex(pattern: str) -> str:
    segments = pattern.split("/")
    regex = ""
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
            continue
        for char in segment:
            regex += {"*": "[^/]*", "?": "[^/]"}.get(char) or re.escape(char)
        regex += "" if last else "/"
    return regex
