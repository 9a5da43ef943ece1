"""The releases the reliability tests run, and what each does to the processes under them.

Each scenario is a coroutine that submits one release (or two) through the ``relman`` CLI,
drives it (approvals, a CloudWatch alarm set through the AWS API), kills or cuts off
processes at its points and returns an :class:`Outcome`: the final status and AWS state, and
the figures ``docs/reliability.md`` reports. The tests assert on outcomes; the conftest runs
the scenarios side by side, since most of their time is spent waiting for Temporal to notice
a dead process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.service import RPCError

from models.status import ReleaseStatus, WavePhase
from tests.reliability.aws_proxy import AwsProxy, Call, Faults, listener_weights
from tests.reliability.harness import (
    REAL_TIMEOUTS,
    CliResult,
    DevServer,
    Kill,
    MotoServer,
    Release,
    Seeded,
    WorkerOptions,
    WorkerProcess,
    approval_problems,
    deployed,
    describe_now,
    elbv2,
    eventually,
    free_port,
    lambda_alias,
    plan_data,
    relman,
    seed_plan,
    ssm,
    ssm_version_count,
    timeline_duplicates,
    write_problems,
)

FULL = os.environ.get("RELMAN_RELIABILITY_FULL", "") not in ("", "0")
# Seconds the AWS endpoint stays down in each outage of the outage scenario.
OUTAGE_SECONDS = float(os.environ.get("RELMAN_RELIABILITY_OUTAGE_SECONDS") or (30 if FULL else 6))
RANDOM_KILLS = int(os.environ.get("RELMAN_RELIABILITY_RANDOM") or (20 if FULL else 2))
SEED = int(os.environ.get("RELMAN_RELIABILITY_SEED") or random.SystemRandom().randrange(10**6))
ALARM_REASON = "Threshold Crossed: 1 datapoint [42.0] was greater than the threshold (5.0)."


@dataclass
class Stack:
    """The processes scenarios share: a dev server and moto; two more dev servers for the
    scenarios that kill Temporal itself."""

    home: Path
    temporal: DevServer
    temporal_to_kill: DevServer
    temporal_random: DevServer
    moto: MotoServer


@dataclass
class Outcome:
    """What a scenario did and what it left behind."""

    scenario: str
    releases: list[Release] = field(default_factory=list)
    statuses: dict[str, ReleaseStatus] = field(default_factory=dict)
    aws_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    aws_expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    ssm_new_versions: dict[str, int] = field(default_factory=dict)
    ssm_expected_versions: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


async def _settle(outcome: Outcome, release: Release, stack: Stack, rolled_back: bool) -> None:
    """Record the end of ``release``: status, AWS state, SSM versions and every check."""
    final = await release.result_status()
    seeded, aws = release.seeded, stack.moto.aws()
    outcome.statuses[release.id] = final
    outcome.kills += release.kills
    after = await asyncio.to_thread(describe_now, seeded, aws)
    expected = seeded.before if rolled_back else deployed(seeded)
    outcome.aws_after[release.id] = after
    outcome.aws_expected[release.id] = json.loads(json.dumps(expected, default=str))
    for parameter, before in seeded.ssm_versions.items():
        now = await asyncio.to_thread(ssm_version_count, aws, parameter)
        outcome.ssm_new_versions[parameter] = now - before
    outcome.problems += [f"{release.id}: {p}" for p in timeline_duplicates(final)]
    outcome.problems += [
        f"{release.id}: {p}" for p in approval_problems(final, release.approvals_sent)
    ]
    outcome.problems += [
        f"{release.id}: {p}" for p in write_problems(release.proxy, seeded, rolled_back)
    ]


async def _release(
    stack: Stack,
    scenario: str,
    data: dict[str, Any],
    server: DevServer | None = None,
    options: WorkerOptions | None = None,
    proxy: AwsProxy | None = None,
    worker: WorkerProcess | None = None,
    refused: bool = False,
) -> Release:
    """Seed ``data``'s resources, start a proxy and a worker for it, submit it (``refused``:
    the submission is expected to be refused)."""
    server = server or stack.temporal
    aws = stack.moto.aws()
    directory = stack.home / scenario
    directory.mkdir(parents=True, exist_ok=True)
    seeded: Seeded = await asyncio.to_thread(seed_plan, data, aws, directory)
    if proxy is None:
        proxy = AwsProxy(stack.moto.port)
        proxy.start()
    if worker is None:
        if REAL_TIMEOUTS and options is not None:
            options = WorkerOptions(real=True)
        worker = WorkerProcess(scenario, directory, server, proxy.endpoint, options)
        await worker.start()
    release = Release(scenario, seeded, server, worker, proxy, directory, await server.client())
    release.submitted = await release.submit(refused)
    return release


def _wave(name: str, targets: list[str], **fields: Any) -> dict[str, Any]:
    return {"name": name, "department": "payments", "targets": targets} | fields


def _alarm(name: str) -> dict[str, Any]:
    return {"alarms": [name], "bake_interval": "1s"}


def _set_alarm(stack: Stack, name: str, state: str = "ALARM") -> None:
    stack.moto.aws().client("cloudwatch").set_alarm_state(
        AlarmName=name, StateValue=state, StateReason=ALARM_REASON
    )


def _is(operation: str, **body: Any) -> Any:
    """A hold predicate: ``operation`` whose JSON body has ``body``'s items."""

    def match(call: Call) -> bool:
        if call.operation != operation:
            return False
        data = call.json()
        return all(data.get(k) == v for k, v in body.items())

    return match


def _alias_at(version: str, weight: float | None) -> Any:
    """UpdateAlias to ``version`` with the new version at ``weight`` (None: no weights)."""

    def match(call: Call) -> bool:
        if call.operation != "UpdateAlias":
            return False
        data = call.json()
        weights = (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        if weight is None:
            return data.get("FunctionVersion") == version and not weights
        return any(math.isclose(w, weight) for w in weights.values())

    return match


def _green_at(percent: int) -> Any:
    """ModifyListener that gives the green target group ``percent``."""

    def match(call: Call) -> bool:
        if call.operation != "ModifyListener":
            return False
        weights = list(listener_weights(call).values())
        return len(weights) == 2 and weights[1] == percent

    return match


# The ops wave's window opens after the kill during snapshotting has been recovered from: a
# minute-long activity timeout with Temporal's real timeouts, seconds otherwise.
OPS_WINDOW_LEAD = timedelta(seconds=180 if REAL_TIMEOUTS else 40)


def _window_opening_soon(lead: timedelta) -> dict[str, Any]:
    """A UTC window that opens at the first whole minute at least ``lead`` from now."""
    now = datetime.now(UTC)
    start = (now + lead + timedelta(minutes=1)).replace(second=0, microsecond=0)
    end = start + timedelta(minutes=30)
    return {"timezone": "UTC", "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}


# --- worker kills: a release that completes ----------------------------------------------------


async def completing(stack: Stack) -> Outcome:
    """Ten worker kills across a three-wave release of SSM, Lambda alias and ELB targets."""
    started, outcome = time.monotonic(), Outcome("completing")
    data = plan_data(
        "rel-crash-complete",
        [
            ssm("a-cfg", "/rel/a/cfg", "7.0.0"),
            ssm("a-flag", "/rel/a/flag", "on"),
            ssm("a-ops", "/rel/a/ops", "7.0.0"),
            lambda_alias("a-fn", "rel-a-fn", 3),
            elbv2("a-alb", "rel-a-lb"),
        ],
        [
            _wave("config", ["a-cfg", "a-flag"], bake="3s"),
            # Beside the others: its window opens while the canary is being crashed.
            _wave("ops", ["a-ops"], window=_window_opening_soon(OPS_WINDOW_LEAD)),
            _wave(
                "canary",
                ["a-fn", "a-alb"],
                after=["config"],
                approval={"groups": {"cab": 1, "ops": 1}},
                traffic=[10, 50, 100],
                bake="2s",
                **_alarm("rel-a-5xx"),
            ),
        ],
    )
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    snapshot = proxy.hold("snapshot read", _is("GetParameter", Name="/rel/a/cfg"))
    put = proxy.hold("ssm write", _is("PutParameter", Name="/rel/a/cfg"))
    alarms = proxy.hold("alarm check", lambda c: c.operation == "DescribeAlarms")
    alias_10 = proxy.hold("alias 10%", _alias_at("3", 0.1))
    green_50 = proxy.hold("elb 50%", _green_at(50))
    alias_100 = proxy.hold("alias 100%", _alias_at("3", None))
    r = await _release(stack, "completing", data, options=WorkerOptions(), proxy=proxy)
    config, canary = r.wave_id("config"), r.wave_id("canary")

    await r.held(snapshot, "snapshot_targets", "config")
    await r.kill_worker("snapshotting a target (read in flight)", snapshot, watch=config)

    await r.until("ops waiting for its window", lambda s: s.wave("ops").next_start)
    await r.kill_worker("waiting for a rollout window (durable timer)")

    await r.held(put, "apply_targets", "config")
    await r.kill_worker("applying SSM: write landed, answer lost", put, forward=True, watch=config)

    await r.until("config baking", lambda s: s.wave("config").phase == WavePhase.BAKING)
    await r.kill_worker("baking on a durable timer (wave without alarms)")

    await r.until("canary gate", lambda s: [p.wave for p in s.pending_approvals] == ["canary"])
    await r.approve("canary", "bob")
    await r.until("bob counted", lambda s: len(s.wave("canary").approvals) == 1)
    await r.kill_worker("awaiting approval, one of two approvals given")
    await r.approve("canary", "dave")

    await r.held(alarms, "check_alarms", "canary")
    await r.kill_worker("checking alarms before the first traffic step", alarms, watch=canary)

    await r.held(alias_10, "apply_targets", "canary")
    await r.kill_worker("shifting Lambda alias to 10%: write never arrived", alias_10, watch=canary)

    await eventually(lambda: r.running_activity(canary, "watch_alarms"), "bake at 10%")
    await r.kill_worker("baking at 10% (heartbeating alarm watch)", watch=canary)

    await r.held(green_50, "apply_targets", "canary")
    await r.kill_worker(
        "shifting ELB weights to 50%: write landed, answer lost", green_50, forward=True,
        watch=canary,
    )  # fmt: skip

    await r.held(alias_100, "apply_targets", "canary")
    await r.kill_worker(
        "promoting Lambda alias to 100%: write landed, answer lost", alias_100, forward=True,
        watch=canary,
    )  # fmt: skip

    # A retried command (same update id) after the gate passed: the first answer, counted once.
    again = await r.approve("canary", "bob")
    outcome.figures["approval repeated"] = json.loads(again.stdout)
    await _settle(outcome, r, stack, rolled_back=False)
    # The bake killed at 10 % counted the time no worker read its alarms as a gap (unless
    # the kill came before its first heartbeat: then the retry baked from the start).
    outcome.figures["alarms unread"] = [
        e.message for e in outcome.statuses[r.id].timeline if e.kind == "alarms_unread"
    ]
    outcome.releases.append(r)
    outcome.ssm_expected_versions = {"/rel/a/cfg": 1, "/rel/a/flag": 1, "/rel/a/ops": 1}
    # The CLI on the finished release: its decisions are closed, with a clear message.
    late = await relman("approve", r.id, "--wave", "canary", "--as", "carol", env=r.env)
    outcome.figures["late approval"] = (late.returncode, late.stderr.strip())
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- worker kills during a rollback ------------------------------------------------------------


async def rolling_back(stack: Stack) -> Outcome:
    """An approval sent while the worker is dead; an alarm in the bake; kills mid-rollback."""
    started, outcome = time.monotonic(), Outcome("rolling_back")
    data = plan_data(
        "rel-crash-rollback",
        [ssm("b-cfg", "/rel/b/cfg", "7.0.0"), lambda_alias("b-fn", "rel-b-fn", 2),
         elbv2("b-alb", "rel-b-lb")],
        [
            _wave("config", ["b-cfg"]),
            _wave("canary", ["b-fn", "b-alb"], after=["config"],
                  approval={"groups": {"cab": 1}}, traffic=[25, 100], bake="120s",
                  **_alarm("rel-b-5xx")),
        ],
    )  # fmt: skip
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    restore_elb = proxy.hold("elb restore", _green_at(0))
    restore_alias = proxy.hold("alias restore", _alias_at("1", None))
    restore_ssm = proxy.hold(
        "ssm restore", _is("PutParameter", Name="/rel/b/cfg", Value="previous")
    )
    r = await _release(stack, "rolling_back", data, options=WorkerOptions(), proxy=proxy)

    await r.until("canary gate", lambda s: [p.wave for p in s.pending_approvals] == ["canary"])
    await r.worker.kill()
    # The approval waits for a worker (up to --wait-for-worker) and sends nothing meanwhile:
    # Temporal holds no Update that a worker could apply after the command gave up.
    approval = asyncio.create_task(r.approve("canary", "carol", "--wait-for-worker", "5m"))
    await asyncio.sleep(3)  # the command runs and keeps asking the release for a worker
    assert not approval.done(), "an approval completed with no worker running"
    assert not await r.update_waiting(), "an approval reached Temporal with no worker running"
    await r.worker.start()
    decided = json.loads((await approval).stdout)
    assert decided["satisfied"] is True, decided
    r.kills.append(Kill("rolling_back", "approval sent while the worker was dead", "worker"))

    canary = r.wave_id("canary")
    await eventually(lambda: r.running_activity(canary, "watch_alarms"), "bake at 25%")
    await asyncio.to_thread(_set_alarm, stack, "rel-b-5xx")

    # The canary's two targets are restored side by side: the worker dies with both writes
    # in flight; the ELB write lands (its answer is lost), the alias write never arrives.
    await r.held(restore_elb, "compensate_target", "")
    await r.held(restore_alias, "compensate_target", "")
    await r.kill_worker("rolling back ELB weights and Lambda alias side by side: one write "
                        "landed, answer lost; one never arrived", restore_elb, forward=True,
                        watch=r.id, dropped=[restore_alias])  # fmt: skip
    await r.held(restore_ssm, "compensate_target", "")
    await r.kill_worker("rolling back SSM: write landed, answer lost", restore_ssm, forward=True,
                        watch=r.id)  # fmt: skip

    await _settle(outcome, r, stack, rolled_back=True)
    outcome.releases.append(r)
    outcome.ssm_expected_versions = {"/rel/b/cfg": 2}  # the release's value, then the old one
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- failover: a worker killed mid-apply, another one idle ------------------------------------

FAILOVER_TARGETS = 42


async def failover(stack: Stack) -> Outcome:
    """A worker SIGKILLed in the middle of applying 42 targets, with a second worker idle on
    the same task queue: the batch heartbeated the 41 targets it had done, so the retry on
    the second worker starts within the heartbeat timeout and applies only the last one.
    Then the next wave's gate is rejected and the worker restoring the last of the 42
    targets is killed: its restore resumes on the other worker as quickly."""
    started, outcome = time.monotonic(), Outcome("failover")
    targets = [ssm(f"h-{i:02}", f"/rel/h/p{i:02}", "7.0.0") for i in range(FAILOVER_TARGETS)]
    data = plan_data(
        "rel-failover",
        [*targets, ssm("h-last", "/rel/h/last", "7.0.0")],
        [
            _wave("wide", [t["name"] for t in targets]),
            _wave("last", ["h-last"], after=["wide"], approval={"groups": {"cab": 1}}),
        ],
    )
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    held = proxy.hold("ssm write p11", _is("PutParameter", Name="/rel/h/p11", Value="7.0.0"))
    restore = proxy.hold("ssm restore p11", _is("PutParameter", Name="/rel/h/p11",
                                                 Value="previous"))  # fmt: skip
    options = WorkerOptions(real=True) if REAL_TIMEOUTS else WorkerOptions()
    r = await _release(stack, "failover", data, options=options, proxy=proxy)
    wide = r.wave_id("wide")
    await r.held(held, "apply_targets", "wide")
    # Started once the first worker runs the batch: the second one waits, idle.
    standby = WorkerProcess(
        "failover-standby", r.home, r.server, proxy.endpoint, options, r.worker.task_queue
    )
    await standby.start()

    async def shown() -> dict[str, int] | None:
        answer = await relman("status", r.id, "-o", "json", env=r.env)
        if answer.returncode != 0:
            return None
        phases = Counter(t["phase"] for t in json.loads(answer.stdout)["waves"][0]["targets"])
        return dict(phases) if phases["applied"] == FAILOVER_TARGETS - 1 else None

    # `relman status` shows the targets the running batch has done (its heartbeat).
    outcome.figures["status before the kill"] = await eventually(shown, "41 targets shown applied")
    calls_before = Counter(proxy.calls)
    killed_wall, killed = datetime.now(UTC), time.monotonic()
    await r.worker.kill()
    held.drop()
    apply = await _resumed(r, wide, "apply_targets", killed_wall)

    async def step_done() -> bool:
        return (await r.status()).wave("wide").phase != WavePhase.DEPLOYING

    await eventually(step_done, "the step to finish on the second worker")
    kill = Kill("failover", "applying 42 SSM parameters, 41 done, one write dropped", "worker")
    kill.recovered_seconds = time.monotonic() - killed
    r.kills.append(kill)
    calls = Counter(proxy.calls)
    calls.subtract(calls_before)
    apply["step done after kill (s)"] = round(kill.recovered_seconds, 1)
    apply["ssm calls after the kill"] = {k: n for k, n in calls.items() if k[:4] == "ssm:" and n}
    outcome.figures["apply"] = apply

    # The first worker comes back, idle; the rejection rolls the 42 targets back.
    await r.worker.start()
    await r.until("gate of last", lambda s: [p.wave for p in s.pending_approvals] == ["last"])
    await r.approve("last", "carol", reject=True)
    await r.held(restore, "compensate_target", "")

    async def restoring_alone() -> str | None:
        described = await r.handle.describe()
        pending = [p for p in described.raw_description.pending_activities
                   if p.activity_type.name == "compensate_target"]  # fmt: skip
        return pending[0].last_worker_identity if len(pending) == 1 else None

    identity = await eventually(restoring_alone, "41 restores done, one in flight")
    victim = next(w for w in (r.worker, standby) if identity.startswith(f"{w.proc.popen.pid}@"))
    killed_wall, killed = datetime.now(UTC), time.monotonic()
    await victim.kill()
    restore.drop()
    rollback = await _resumed(r, r.id, "compensate_target", killed_wall)
    kill = Kill("failover", "restoring 42 SSM parameters, 41 done, one write dropped", "worker")
    kill.recovered_seconds = time.monotonic() - killed
    r.kills.append(kill)
    outcome.figures["restore"] = rollback

    await _settle(outcome, r, stack, rolled_back=True)
    outcome.releases.append(r)
    # Each of the 42: the release's value, then the previous one back; "last" never changed.
    outcome.ssm_expected_versions = {t["parameter"]: 2 for t in targets} | {"/rel/h/last": 0}
    for worker in (r.worker, standby):
        worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


async def _resumed(
    r: Release, workflow_id: str, activity: str, killed_wall: datetime
) -> dict[str, Any]:
    """Watch the killed worker's attempt of ``activity`` until another attempt starts: when
    Temporal noticed (the attempt's failure) and when the next attempt started, in seconds
    from the kill (the server's own start time of the attempt)."""
    killed = time.monotonic()
    figures: dict[str, Any] = {}
    while "resumed after kill (s)" not in figures:
        described = await r.client.get_workflow_handle(workflow_id).describe()
        retried = [p for p in described.raw_description.pending_activities
                   if p.activity_type.name == activity and p.attempt >= 2]  # fmt: skip
        if retried and "noticed after kill (s)" not in figures:
            figures["noticed after kill (s)"] = round(time.monotonic() - killed, 1)
            figures["failure noticed"] = retried[0].last_failure.message
        if retried and retried[0].HasField("last_started_time"):
            started_at = retried[0].last_started_time.ToDatetime(tzinfo=UTC)
            if started_at > killed_wall:
                figures["resumed after kill (s)"] = round(
                    (started_at - killed_wall).total_seconds(), 1
                )
        elif not any(
            p.activity_type.name == activity for p in described.raw_description.pending_activities
        ):
            figures.setdefault("noticed after kill (s)", round(time.monotonic() - killed, 1))
            figures["resumed after kill (s)"] = figures[
                "noticed after kill (s)"
            ]  # done between polls
        if time.monotonic() - killed > 120:
            raise AssertionError(f"{activity} did not resume within 120 s")
        await asyncio.sleep(0.05)
    return figures


# --- Temporal server kills ---------------------------------------------------------------------


async def server_kills(stack: Stack) -> Outcome:
    """Four SIGKILLs of the Temporal dev server, restarted on the same SQLite file and port."""
    started, outcome = time.monotonic(), Outcome("server_kills")
    server = stack.temporal_to_kill
    data = plan_data(
        "rel-crash-server",
        [ssm("c-cfg", "/rel/c/cfg", "7.0.0"), elbv2("c-alb", "rel-c-lb"),
         ssm("c-cfg2", "/rel/c/cfg2", "7.0.0")],
        [
            _wave("one", ["c-cfg", "c-alb"], approval={"groups": {"cab": 1}}, traffic=[50, 100],
                  bake="4s", **_alarm("rel-c-5xx")),
            _wave("two", ["c-cfg2"], after=["one"], approval={"groups": {"ops": 1}}),
        ],
    )  # fmt: skip
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    green_50 = proxy.hold("elb 50%", _green_at(50))
    restore = proxy.hold("elb restore", _green_at(0))
    r = await _release(stack, "server_kills", data, server=server, options=WorkerOptions(),
                       proxy=proxy)  # fmt: skip
    one = r.wave_id("one")

    await r.until("gate of one", lambda s: [p.wave for p in s.pending_approvals] == ["one"])
    await r.kill_server("awaiting approval")
    await r.approve("one", "bob")

    await r.held(green_50, "apply_targets", "one")
    await r.kill_server("shifting ELB weights to 50% (write in flight)", green_50, forward=True,
                        watch=one)  # fmt: skip

    await eventually(lambda: r.running_activity(one, "watch_alarms"), "bake at 50%")
    await r.kill_server("baking at 50% (heartbeating alarm watch)", watch=one)

    await r.until("gate of two", lambda s: [p.wave for p in s.pending_approvals] == ["two"])
    await r.approve("two", "erin", reject=True)
    await r.held(restore, "compensate_target", "")
    await r.kill_server("rolling back ELB weights (write in flight)", restore, forward=True,
                        watch=r.id)  # fmt: skip

    await _settle(outcome, r, stack, rolled_back=True)
    outcome.releases.append(r)
    outcome.ssm_expected_versions = {"/rel/c/cfg": 2, "/rel/c/cfg2": 0}
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- random kills ------------------------------------------------------------------------------

# Events a clean run of the random scenario's release writes (release and wave histories).
RANDOM_RELEASE_EVENTS = 320


async def random_kills(stack: Stack, kills: int = RANDOM_KILLS, seed: int = SEED) -> Outcome:
    """Kill the worker (or, one time in four, the Temporal server) at ``kills`` points drawn
    from the release's history length with a seeded generator."""
    started, outcome = time.monotonic(), Outcome("random_kills")
    rng = random.Random(seed)
    outcome.figures["seed"] = seed
    server = stack.temporal_random
    data = plan_data(
        f"rel-crash-random-{seed}",
        [ssm("r-cfg", "/rel/r/cfg", "7.0.0"), ssm("r-flag", "/rel/r/flag", "on"),
         ssm("r-ops", "/rel/r/ops", "7.0.0"), lambda_alias("r-fn", "rel-r-fn", 4),
         elbv2("r-alb", "rel-r-lb")],
        [
            _wave("config", ["r-cfg", "r-flag"], approval={"groups": {"cab": 1}}),
            _wave("ops", ["r-ops"], after=["config"], bake="3s"),
            _wave("canary", ["r-fn", "r-alb"], after=["config"],
                  approval={"groups": {"ops": 1}}, traffic=[20, 60, 100], bake="2s",
                  **_alarm("rel-r-5xx")),
        ],
    )  # fmt: skip
    points = sorted(rng.randrange(8, int(RANDOM_RELEASE_EVENTS * 0.85)) for _ in range(kills))
    victims = ["temporal" if rng.random() < 0.25 else "worker" for _ in points]
    outcome.figures["points"] = list(zip(points, victims, strict=True))
    r = await _release(stack, f"random_kills-{seed}", data, server=server, options=WorkerOptions())
    waves = [w["name"] for w in data["waves"]]
    approvers = {"config": "bob", "canary": "dave"}
    approved: set[str] = set()

    async def events() -> int:
        total = 0
        for workflow_id in [r.id, *(r.wave_id(w) for w in waves)]:
            with contextlib.suppress(RPCError):  # a wave not started yet
                total += await r.history_length(workflow_id)
        return total

    async def autopilot() -> None:
        """Approve each gate once it waits, as its approver would, whatever gets killed."""
        while True:
            try:
                st = await r.status()
            except Exception:
                await asyncio.sleep(0.2)
                continue
            if st.finished:
                return
            for pending in st.pending_approvals:
                if pending.wave not in approved:
                    result = await relman("approve", r.id, "--wave", pending.wave, "--as",
                                          approvers[pending.wave], env=r.env)  # fmt: skip
                    if result.returncode == 0:
                        approved.add(pending.wave)
                        r.approvals_sent.append((pending.wave, approvers[pending.wave]))
            await asyncio.sleep(0.2)

    pilot = asyncio.create_task(autopilot())
    try:
        for n, (point, victim) in enumerate(zip(points, victims, strict=True), 1):

            async def reached(point: int = point) -> bool:
                return await events() >= point

            try:
                await eventually(reached, f"history length {point}", 90)
            except AssertionError:
                outcome.figures.setdefault("not reached", []).append(point)
                continue
            name = f"random #{n}: history event {point}"
            if victim == "temporal":
                await r.kill_server(name)
            else:
                await r.kill_worker(name)
        await _settle(outcome, r, stack, rolled_back=False)
    finally:
        pilot.cancel()
    outcome.releases.append(r)
    outcome.ssm_expected_versions = {"/rel/r/cfg": 1, "/rel/r/flag": 1, "/rel/r/ops": 1}
    outcome.figures["events"] = await events()
    r.worker.stop()
    r.proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- AWS outages and faults --------------------------------------------------------------------


async def outages(stack: Stack) -> Outcome:
    """The AWS endpoint goes down mid-apply, mid-bake and mid-rollback."""
    started, outcome = time.monotonic(), Outcome("outages")
    data = plan_data(
        "rel-outage",
        [ssm("d-cfg", "/rel/d/cfg", "7.0.0"), lambda_alias("d-fn", "rel-d-fn", 2),
         elbv2("d-alb", "rel-d-lb")],
        [
            _wave("config", ["d-cfg"]),
            _wave("canary", ["d-fn", "d-alb"], after=["config"], traffic=[50, 100],
                  bake="120s", **_alarm("rel-d-5xx")),
        ],
    )  # fmt: skip
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    apply = proxy.hold("alias 50%", _alias_at("2", 0.5))
    restore = proxy.hold("elb restore", _green_at(0))
    # No kills here: activities keep a generous attempt timeout, retries do the work.
    r = await _release(stack, "outages", data, options=WorkerOptions(attempt_seconds=60),
                       proxy=proxy)  # fmt: skip
    canary = r.wave_id("canary")

    await r.held(apply, "apply_targets", "canary")
    outcome.figures["mid-apply"] = await _outage(r, canary, "apply_targets")

    await eventually(lambda: r.running_activity(canary, "watch_alarms"), "bake at 50%")
    # The bake's alarms go unread while the endpoint is down: the bake goes on (it lasts
    # that much longer), and the alarm it then reads fails the step.
    r.proxy.stop()
    down_at = time.monotonic()
    await asyncio.sleep(OUTAGE_SECONDS)
    r.proxy.start()
    outcome.figures["mid-bake"] = {"down_seconds": round(time.monotonic() - down_at, 1)}
    await asyncio.to_thread(_set_alarm, stack, "rel-d-5xx")
    await r.held(restore, "compensate_target", "")
    outcome.figures["mid-rollback"] = await _outage(r, r.id, "compensate_target")

    await _settle(outcome, r, stack, rolled_back=True)
    unread = [e.message for e in outcome.statuses[r.id].timeline if e.kind == "alarms_unread"]
    outcome.figures["mid-bake"]["timeline"] = unread
    outcome.releases.append(r)
    outcome.ssm_expected_versions = {"/rel/d/cfg": 2}
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


async def _outage(r: Release, workflow_id: str, activity: str) -> dict[str, Any]:
    """Stop the endpoint (the held call is cut off) for OUTAGE_SECONDS; watch the retries."""
    r.proxy.stop()
    down_at = time.monotonic()
    attempts, failure = 0, ""
    while time.monotonic() - down_at < OUTAGE_SECONDS:
        described = await r.client.get_workflow_handle(workflow_id).describe()
        for pending in described.raw_description.pending_activities:
            if pending.activity_type.name == activity:
                attempts = max(attempts, pending.attempt)
                failure = pending.last_failure.message or failure
        await asyncio.sleep(0.25)
    r.proxy.start()
    back_at = time.monotonic()

    async def done() -> bool:
        described = await r.client.get_workflow_handle(workflow_id).describe()
        pending = described.raw_description.pending_activities
        return not any(p.activity_type.name == activity for p in pending)

    await eventually(done, f"{activity} to succeed after the outage")
    return {
        "down_seconds": round(back_at - down_at, 1),
        "attempts_while_down": attempts,
        "last_failure": failure,
        "resumed_after_seconds": round(time.monotonic() - back_at, 1),
    }


async def faults(stack: Stack) -> Outcome:
    """A share of AWS calls answered with throttling or 503 through two releases: one that
    completes and one rejected after its first wave deployed (rolled back)."""
    started, outcome = time.monotonic(), Outcome("faults")
    proxy = AwsProxy(stack.moto.port)
    proxy.start()
    proxy.faults = Faults(throttle=0.25, unavailable=0.10, seed=SEED)
    outcome.figures["fault seed"] = SEED
    complete = plan_data(
        "rel-faults-complete",
        [ssm("f-cfg", "/rel/f/cfg", "7.0.0"), ssm("f-flag", "/rel/f/flag", "on"),
         lambda_alias("f-fn", "rel-f-fn", 4), elbv2("f-alb", "rel-f-lb")],
        [
            _wave("config", ["f-cfg", "f-flag"]),
            _wave("canary", ["f-fn", "f-alb"], after=["config"], traffic=[20, 60, 100],
                  bake="2s", **_alarm("rel-f-5xx")),
        ],
    )  # fmt: skip
    r = await _release(stack, "faults", complete, options=WorkerOptions(attempt_seconds=60),
                       proxy=proxy)  # fmt: skip
    await _settle(outcome, r, stack, rolled_back=False)
    outcome.releases.append(r)

    rejected = plan_data(
        "rel-faults-reject",
        [ssm("g-cfg", "/rel/g/cfg", "7.0.0"), elbv2("g-alb", "rel-g-lb"),
         ssm("g-cfg2", "/rel/g/cfg2", "7.0.0")],
        [
            _wave("one", ["g-cfg", "g-alb"], traffic=[50, 100]),
            _wave("two", ["g-cfg2"], after=["one"], approval={"groups": {"cab": 1}}),
        ],
    )  # fmt: skip
    second = await _release(stack, "faults", rejected, proxy=proxy, worker=r.worker)
    await second.until("gate of two", lambda s: [p.wave for p in s.pending_approvals] == ["two"])
    await second.approve("two", "carol", reject=True)
    await _settle(outcome, second, stack, rolled_back=True)
    outcome.releases.append(second)
    outcome.ssm_expected_versions = {
        "/rel/f/cfg": 1, "/rel/f/flag": 1, "/rel/g/cfg": 2, "/rel/g/cfg2": 0,
    }  # fmt: skip
    outcome.figures["calls forwarded"] = sum(proxy.calls.values())
    outcome.figures["faults injected"] = dict(proxy.faults_injected)
    log = r.worker.proc.text()
    outcome.figures["worker log: failure chains Temporal could not encode"] = log.count(
        "Failed building exception result"
    )
    r.worker.stop()
    proxy.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- a worker whose AWS endpoint does not answer -----------------------------------------------


async def unreachable_aws(stack: Stack) -> Outcome:
    """A worker pointed at an AWS endpoint where nothing listens: the release must end with
    an error naming the endpoint, having changed nothing."""
    started, outcome = time.monotonic(), Outcome("unreachable_aws")
    nowhere = f"http://127.0.0.1:{free_port()}"
    directory = stack.home / "unreachable_aws"
    worker = WorkerProcess("unreachable_aws", directory, stack.temporal, nowhere, WorkerOptions())
    await worker.start()
    proxy = AwsProxy(stack.moto.port)  # unused by the worker; the harness wants one
    data = plan_data("rel-unreachable-aws", [ssm("u-cfg", "/rel/u/cfg", "7.0.0")],
                     [_wave("only", ["u-cfg"])])  # fmt: skip
    r = await _release(stack, "unreachable_aws", data, proxy=proxy, worker=worker, refused=True)
    assert r.submitted is not None
    outcome.figures["submit"] = (r.submitted.returncode, r.submitted.stderr)
    final = await r.result_status()
    outcome.statuses[r.id] = final
    shown = await relman("status", r.id, env=r.env)
    outcome.figures["status"] = (shown.returncode, shown.stdout, shown.stderr)
    outcome.figures["endpoint"] = nowhere
    outcome.aws_after[r.id] = await asyncio.to_thread(describe_now, r.seeded, stack.moto.aws())
    outcome.aws_expected[r.id] = r.seeded.before
    outcome.releases.append(r)
    worker.stop()
    outcome.seconds = time.monotonic() - started
    return outcome


# --- the command line misused ------------------------------------------------------------------


async def cli_misuse(stack: Stack) -> dict[str, tuple[list[str], CliResult]]:
    """Commands a user gets wrong, against a live release and against no Temporal at all:
    each case's arguments and what the CLI answered."""
    data = plan_data(
        "rel-cli-misuse",
        [ssm("m-cfg", "/rel/m/cfg", "7.0.0")],
        [_wave("prod", ["m-cfg"], approval={"groups": {"cab": 1}})],
    )
    r = await _release(stack, "cli_misuse", data, options=WorkerOptions())
    cases: dict[str, tuple[list[str], CliResult]] = {}

    async def case(name: str, *args: str, env: dict[str, str] | None = None) -> None:
        cases[name] = (list(args), await relman(*args, env=env or r.env))

    await r.until("gate", lambda s: [p.wave for p in s.pending_approvals] == ["prod"])
    await case("unknown wave", "approve", r.id, "--wave", "nope", "--as", "bob")
    await case("unknown target", "skip-target", r.id, "--target", "nope", "--reason", "x",
               "--as", "alice")  # fmt: skip
    await case("approver outside the gate's groups", "approve", r.id, "--wave", "prod", "--as",
               "mallory")  # fmt: skip
    await case("requester approving", "approve", r.id, "--wave", "prod", "--as", "alice")
    await case("missing --wave", "approve", r.id, "--as", "bob")
    await case("missing release id", "approve", "--wave", "prod", "--as", "bob")
    await case("missing plan", "submit")
    await case("missing --reason", "pause", r.id, "--as", "alice")
    await case("unknown option", "status", r.id, "--bogus")
    for command in (["status"], ["history"], ["approve", "--wave", "prod", "--as", "bob"],
                    ["abort", "--reason", "x", "--as", "alice"]):  # fmt: skip
        await case(f"unknown release: {command[0]}", command[0], "no-such-release", *command[1:])
    await r.approve("prod", "bob")
    await r.result_status()
    await case("approving a finished release", "approve", r.id, "--wave", "prod", "--as", "carol")
    await case("pausing a finished release", "pause", r.id, "--reason", "x", "--as", "alice")
    r.worker.stop()
    r.proxy.stop()

    # The workers' policy too: a worker without one would refuse before connecting.
    nowhere = {
        **r.env,
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "RELMAN_POLICY": (r.worker.proc.env or {})["RELMAN_POLICY"],
    }
    plan = str(r.seeded.path)
    commands = [
        ["status", r.id], ["history", r.id], ["submit", plan], ["list"],
        ["approvals", "--as", "bob"], ["approve", r.id, "--wave", "prod", "--as", "bob"],
        ["abort", r.id, "--reason", "x", "--as", "alice"], ["worker"],
    ]  # fmt: skip
    for command in commands:
        await case(f"unreachable Temporal: {command[0]}", *command, env=nowhere)
    cases["unreachable Temporal: address"] = ([], CliResult(0, nowhere["TEMPORAL_ADDRESS"], ""))
    return cases
