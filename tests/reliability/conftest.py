"""Fixtures of the reliability tests: real processes, and the scenarios run side by side.

Most of a crash test's time is spent waiting for Temporal to notice that a process died, so
the ``campaign`` fixture starts every scenario the selected tests need as a task on the
session's event loop, all at once; each test then awaits its scenario's outcome and asserts
on it. A test that is deselected (``-k``) does not start its scenario.

Environment:

- ``RELMAN_RELIABILITY_RANDOM=N``: random kill points in the random scenario (default 2).
- ``RELMAN_RELIABILITY_SEED=S``: its seed, and the fault proxy's (default: random, printed).
- ``RELMAN_RELIABILITY_FULL=1``: 20 random kills and 30 s AWS outages.
- ``RELMAN_RELIABILITY_REAL_TIMEOUTS=1``: workers with Temporal's real timeouts (slow).
- ``RELMAN_RELIABILITY_REPORT=PATH``: write the figures of the run as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import pytest

from tests.reliability import fleet_scenarios, job_scenarios, scenarios
from tests.reliability.bad_inputs import bad_inputs
from tests.reliability.harness import DevServer, MotoServer, Proc

SCENARIOS = {
    "completing": scenarios.completing,
    "rolling_back": scenarios.rolling_back,
    "failover": scenarios.failover,
    "server_kills": scenarios.server_kills,
    "random_kills": scenarios.random_kills,
    "outages": scenarios.outages,
    "faults": scenarios.faults,
    "unreachable_aws": scenarios.unreachable_aws,
    "cli_misuse": scenarios.cli_misuse,
    "job_crash": job_scenarios.job_crash,
    "fleet_crash": fleet_scenarios.fleet_crash,
    "bad_inputs": lambda stack: bad_inputs(stack.temporal.address, stack.home / "bad-inputs"),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scenario(name): the reliability scenario whose outcome the test checks"
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STARTED:
        terminalreporter.write_line(
            f"relman reliability: seed {scenarios.SEED} (RELMAN_RELIABILITY_SEED repeats it), "
            f"{scenarios.RANDOM_KILLS} random kill(s), AWS outages of "
            f"{scenarios.OUTAGE_SECONDS:g}s; scenarios: {', '.join(sorted(_STARTED))}"
        )


_STARTED: set[str] = set()


class Campaign:
    """The running scenarios; ``await campaign.outcome(name)`` waits for one."""

    def __init__(self, tasks: dict[str, asyncio.Task[Any]]):
        self.tasks = tasks

    async def outcome(self, name: str) -> Any:
        return await self.tasks[name]


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[scenarios.Stack]:
    """Temporal dev servers (two of them for the scenarios that kill one) and a moto server,
    as processes."""
    home = tmp_path_factory.mktemp("reliability")
    servers = [DevServer(home, name) for name in ("temporal", "temporal-killed", "temporal-random")]
    moto = MotoServer(home)
    try:
        await asyncio.gather(*(s.start() for s in servers), moto.start())
        yield scenarios.Stack(home, *servers, moto)
    finally:
        for proc in Proc.started:  # workers a failed scenario left behind, then the servers
            if proc.alive:
                proc.kill()


@pytest.fixture(scope="session")
async def campaign(
    request: pytest.FixtureRequest, stack: scenarios.Stack
) -> AsyncIterator[Campaign]:
    wanted = {
        marker.args[0] for item in request.session.items for marker in item.iter_markers("scenario")
    }
    tasks = {
        name: asyncio.create_task(SCENARIOS[name](stack), name=name)  # type: ignore[no-untyped-call]
        for name in sorted(wanted)
    }
    _STARTED.update(tasks)
    yield Campaign(tasks)
    for task in tasks.values():
        task.cancel()
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    report = os.environ.get("RELMAN_RELIABILITY_REPORT")
    if report:
        with open(report, "w") as out:
            json.dump(_figures(dict(zip(tasks, results, strict=True))), out, indent=1, default=str)


def _figures(results: dict[str, Any]) -> dict[str, Any]:
    """What docs/reliability.md reports, from each scenario's outcome."""
    out: dict[str, Any] = {"seed": scenarios.SEED}
    for name, result in results.items():
        for outcome in (result,):
            if isinstance(outcome, scenarios.Outcome):
                out[outcome.scenario] = {
                    "seconds": round(outcome.seconds, 1),
                    "phases": {k: v.phase.value for k, v in outcome.statuses.items()},
                    "kills": [asdict(k) for k in outcome.kills],
                    "problems": outcome.problems,
                    "ssm_new_versions": outcome.ssm_new_versions,
                    "figures": outcome.figures,
                }
            elif isinstance(outcome, BaseException):
                out[name] = f"failed: {outcome!r}"
            elif hasattr(outcome, "runs"):
                out[name] = {"files": len(outcome.runs), "seconds": round(outcome.seconds, 1)}
    return out
