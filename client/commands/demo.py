"""``relman demo``: the main job on the embedded stack, with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def demo(
    plan_path: Annotated[
        Path | None,
        typer.Option("--plan", help="release that completes (default: examples/demo.yaml)"),
    ] = None,
    rollback_plan_path: Annotated[
        Path | None,
        typer.Option(
            "--rollback-plan",
            help="release whose alarm fires and that rolls back "
            "(default: examples/rollback-demo.yaml)",
        ),
    ] = None,
) -> None:
    """Start the local stack if needed; run a release that completes, then one whose alarm
    fires during the bake and that rolls back; verify AWS after each."""
    from client.commands.dev import bring_up
    from client.demo import (
        DEMO_PLAN,
        ROLLBACK_PLAN,
        demo_succeeded,
        load_demo_plan,
        run_release_demo,
        run_rollback_demo,
        use_local_aws,
    )
    from client.output import console
    from common.errors import CliError

    out = console()

    def say(message: str) -> None:
        out.print(message, markup=False)

    # Plans first: bad input starts nothing.
    plan = load_demo_plan(plan_path or DEMO_PLAN)
    rollback_plan = load_demo_plan(rollback_plan_path or ROLLBACK_PLAN)
    state = bring_up(say=say)
    out.print(f"Temporal UI: {state.ui_url}")
    aws = use_local_aws(state.aws_endpoint)

    out.rule("1. a release that completes")
    final, checks = run_release_demo(plan, aws, say)
    _print_release(out, final, checks)
    first_ok = demo_succeeded(final, checks)

    out.rule("2. a release whose alarm fires during the bake")
    outcome = run_rollback_demo(rollback_plan, aws, say)
    _print_rollback(out, outcome)

    problems = []
    if not first_ok:
        problems.append(
            f"release {final.release_id} ended {final.phase.value}"
            + (f" ({final.error})" if final.error else "")
            + ("; AWS does not match the plan" if not all(c.ok for c in checks) else "")
        )
    if not outcome.succeeded:
        problems.append(_rollback_problem(outcome))
    if problems:
        raise CliError("demo failed: " + "; ".join(problems))
    out.print(
        "[green]demo passed: the first release completed with AWS matching its plan; the "
        "second rolled back on its alarm and every resource is exactly as before[/green]"
    )


def _print_release(out: Any, final: Any, checks: list[Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{final.release_id}: {final.phase.value}")
    for column in ("resource", "before", "after (plan)", "actual in AWS", "ok"):
        table.add_column(column)
    for c in checks:
        table.add_row(
            c.resource,
            c.before,
            c.expected,
            c.actual or "(absent)",
            "[green]yes[/green]" if c.ok else "[red]NO[/red]",
        )
    out.print(table)


def _print_rollback(out: Any, outcome: Any) -> None:
    from rich.table import Table

    from client.demo_aws import label, show

    final = outcome.final
    table = Table(
        title=f"{final.release_id}: {final.phase.value}",
        caption="restored = the full describe output equals the one taken before the release "
        "(alias FunctionVersion and RoutingConfig, listener DefaultActions, parameter Value)",
    )
    for column in ("resource", "before", "while baking", "after", "restored?"):
        table.add_column(column)
    for c in outcome.checks:
        if c.restored:
            verdict = "[green]yes[/green]"
        else:
            verdict = "[red]NO: " + ", ".join(c.differences()) + "[/red]"
        table.add_row(
            label(c.target),
            show(c.target, c.before),
            show(c.target, c.during) if c.during is not None else "-",
            show(c.target, c.after),
            verdict,
        )
    out.print(table)


def _rollback_problem(outcome: Any) -> str:
    final = outcome.final
    if outcome.alarm is None:
        return f"release {final.release_id} ended {final.phase.value} before its canary baked"
    if final.phase.value != "rolled_back":
        return f"release {final.release_id} ended {final.phase.value}, not rolled_back" + (
            f" ({final.error})" if final.error else ""
        )
    unchanged = [c.resource for c in outcome.checks if not c.changed]
    if unchanged:
        return f"release {final.release_id} never changed: " + ", ".join(unchanged)
    return f"release {final.release_id} left changed: " + ", ".join(
        c.resource for c in outcome.checks if not c.restored
    )
