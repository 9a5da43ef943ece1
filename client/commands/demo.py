"""``relman demo``: the main job on the embedded stack, with live progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def demo(
    plan_path: Annotated[
        Path | None, typer.Option("--plan", help="plan to run (default: examples/demo.yaml)")
    ] = None,
) -> None:
    """Start the local stack if needed, run an approved multi-wave release, verify AWS."""
    from rich.table import Table

    from client.commands.dev import bring_up
    from client.demo import DEMO_PLAN, demo_succeeded, run_release_demo, use_local_aws
    from client.errors import CliError
    from client.output import console

    out = console()
    state = bring_up(say=lambda m: out.print(m, markup=False))
    out.print(f"Temporal UI: {state.ui_url}")
    aws = use_local_aws(state.aws_endpoint)
    final, checks = run_release_demo(
        plan_path or DEMO_PLAN, aws, lambda m: out.print(m, markup=False)
    )

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
    if not demo_succeeded(final, checks):
        raise CliError(
            f"demo release ended {final.phase.value}"
            + (f": {final.error}" if final.error else "")
            + "; AWS state does not match the plan" * (not all(c.ok for c in checks))
        )
    out.print("[green]demo release completed; every resource matches the plan[/green]")
