"""``relman policy``: check an organisation policy file, print the policy's JSON Schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from client.commands.common import OutputOption
from client.output import OutputFormat, emit

if TYPE_CHECKING:
    from models.policy import Policy

app = typer.Typer(help="Validate the organisation policy, print its schema.", no_args_is_help=True)


@dataclass
class PolicyCheckView:
    """``relman policy check``: the validated policy as a summary (no key material)."""

    path: str
    policy: Policy

    def to_json(self) -> Any:
        policy = self.policy
        return {
            "policy": self.path,
            "valid": True,
            "version": policy.version,
            "digest": policy.digest,
            "dev": policy.dev,
            "people": [
                {"id": p.id, "name": p.name, "ssh_keys": len(p.ssh_keys), "oidc": bool(p.oidc)}
                for p in policy.people
            ],
            "groups": policy.groups,
            "operator_groups": policy.operator_groups,
            "attesters": [a.name for a in policy.attesters],
            "applications": {
                name: rules.model_dump(mode="json") for name, rules in policy.applications.items()
            },
            "freezes": [f.model_dump(mode="json") for f in policy.freezes],
        }

    def render(self, console: Any) -> None:
        from rich.table import Table

        from client.views import when

        policy = self.policy
        dev = " [yellow](dev policy)[/yellow]" if policy.dev else ""
        console.print(
            f"[green]OK[/green] {self.path}: policy version [bold]{policy.version}[/bold]{dev}"
        )
        console.print(f"digest {policy.digest}")
        keyless = [p.id for p in policy.people if not p.ssh_keys]
        console.print(
            f"{len(policy.people)} people, {len(policy.groups)} groups, "
            f"operators: {', '.join(policy.operator_groups) or '-'}, "
            f"attesters: {', '.join(a.name for a in policy.attesters) or '-'}"
        )
        if keyless:
            console.print(
                f"[yellow]no SSH key, cannot sign decisions:[/yellow] {', '.join(keyless)}"
            )
        table = Table(title="Applications", show_lines=True)
        for column in ("application", "approvers", "operators", "self-approval", "may use"):
            table.add_column(column)
        for name, rules in policy.applications.items():
            approvers = "\n".join(f"{d}: {', '.join(g)}" for d, g in rules.approvers.items())
            reach = [f"role {r}" for r in rules.aws_roles]
            reach += [f"account {a}" for a in rules.aws_accounts]
            reach += [f"sns {t}" for t in rules.sns_topics]
            reach += [f"webhook {h}" for h in rules.webhook_hosts]
            table.add_row(
                name,
                approvers or "-",
                ", ".join(rules.operator_groups) or "-",
                "allowed" if rules.allow_self_approval else "no",
                "\n".join(reach) or "-",
            )
        console.print(table)
        for freeze in policy.freezes:
            console.print(f"freeze {when(freeze.start)} -> {when(freeze.end)}: {freeze.reason}")


@app.command("check")
def check(
    policy_path: Annotated[Path, typer.Argument(metavar="FILE", help="the policy's YAML file")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Validate the organisation policy in FILE and summarise it."""
    from common.errors import BadInput
    from models.policy import PolicyError, load_policy

    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        raise BadInput(str(exc)) from None
    emit(PolicyCheckView(str(policy_path), policy), output)


@app.command("schema")
def schema() -> None:
    """Print the organisation policy's JSON Schema (for editors)."""
    from models.policy import Policy

    typer.echo(json.dumps(Policy.model_json_schema(), indent=2))
