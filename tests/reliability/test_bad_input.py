"""Bad input through the real command line: exit code 2, a message naming file and field,
nothing started; misused commands get a clear message and the right exit code, never a
traceback."""

from __future__ import annotations

import pytest

from tests.reliability.bad_inputs import CORPUS, BadInputs
from tests.reliability.conftest import Campaign
from tests.reliability.harness import CliResult

pytestmark = [pytest.mark.devserver, pytest.mark.timeout(600)]


@pytest.mark.scenario("bad_inputs")
async def test_every_bad_plan_exits_2_from_check_and_submit_and_starts_nothing(
    campaign: Campaign,
) -> None:
    result: BadInputs = await campaign.outcome("bad_inputs")

    assert len(result.runs) >= len(CORPUS) + 10 >= 40
    for run in result.runs:
        for command, answer in (("plan check", run.check), ("submit", run.submit)):
            where = f"{command} {run.path.name}"
            assert answer.returncode == 2, (where, answer.stderr)
            assert "Traceback" not in answer.stderr, where
            lines = answer.stderr.strip().removeprefix("error: ").splitlines()
            if run.exact:
                assert lines == [f"{run.path}: {line}" for line in run.expected], where
            else:
                assert lines[0].startswith(f"{run.path}: {run.expected[0]}"), (where, lines)
    assert result.started_on_queue == 0
    assert result.control_started == 1  # the same query sees a plan that was good


def _answer(cases: dict[str, tuple[list[str], CliResult]], name: str) -> CliResult:
    args, answer = cases[name]
    assert "Traceback" not in answer.stderr, (name, args, answer.stderr)
    return answer


@pytest.mark.scenario("cli_misuse")
@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("unknown wave", 2, "has no wave 'nope' (waves: prod)"),
        ("unknown target", 2, "has no target 'nope'"),
        ("approver outside the gate's groups", 1, "mallory is not in any approver group"),
        ("requester approving", 1, "alice requested release rel-cli-misuse and may not"),
        ("missing --wave", 2, "Missing option '--wave'"),
        ("missing release id", 2, "Missing argument 'ID'"),
        ("missing plan", 2, "Missing argument 'PLAN'"),
        ("missing --reason", 2, "Missing option '--reason'"),
        ("unknown option", 2, "No such option: --bogus"),
        ("unknown release: status", 2, "unknown release 'no-such-release'"),
        ("unknown release: history", 2, "unknown release 'no-such-release'"),
        ("unknown release: approve", 2, "unknown release 'no-such-release'"),
        ("unknown release: abort", 2, "unknown release 'no-such-release'"),
        ("approving a finished release", 1, "the release has already ended (completed)"),
        ("pausing a finished release", 1, "has already ended (completed)"),
    ],
)
async def test_misused_command_says_what_is_wrong(
    campaign: Campaign, case: str, code: int, message: str
) -> None:
    answer = _answer(await campaign.outcome("cli_misuse"), case)

    assert answer.returncode == code, answer.stderr
    assert message in answer.stderr


@pytest.mark.scenario("cli_misuse")
@pytest.mark.parametrize(
    "command", ["status", "history", "submit", "list", "approvals", "approve", "abort", "worker"]
)
async def test_unreachable_temporal_is_named_with_exit_1(campaign: Campaign, command: str) -> None:
    cases = await campaign.outcome("cli_misuse")
    address = cases["unreachable Temporal: address"][1].stdout
    answer = _answer(cases, f"unreachable Temporal: {command}")

    assert answer.returncode == 1, answer.stderr
    assert f"cannot connect to Temporal at {address}" in answer.stderr
