"""Results of CLI commands: each renders as text for people and as JSON for scripts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

import client.fleet_view as fleet_view
import client.jobs_view as jobs_view
import models.checks as checks_view
from models.durations import format_duration
from models.messages import DecisionResult
from models.plan import ReleasePlan, Wave
from models.status import (
    WAVE_END_PHASES,
    PolicyInfo,
    ReleaseStatus,
    TimelineEvent,
    WaveStatus,
)
from workflows.windows import local_and_utc

if TYPE_CHECKING:
    from client.audit import Verdict
    from models.policy import Policy

PHASE_STYLE = {
    "completed": "green",
    "rolled_back": "yellow",
    "rolled_back_with_skips": "red",
    "rejected": "red",
    "failed": "red",
    "cancelled": "yellow",
    "rollback_failed": "bold red",
    "deploying": "cyan",
    "baking": "cyan",
    "rolling_back": "magenta",
    "awaiting_approval": "blue",
    "waiting_for_window": "blue",
    "applied": "green",
    "paused": "yellow",
}


def phase_text(phase: str | None) -> Text:
    """A phase name, coloured by what it means."""
    name = phase or "-"
    return Text(name, style=PHASE_STYLE.get(name, ""))


def when(at: datetime | None) -> str:
    """A timestamp in UTC, to the second."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def countdown(at: datetime, now: datetime | None = None) -> str:
    """``in 2d 3h 5m`` until ``at`` (``now`` once it has passed)."""
    seconds = int((at - (now or datetime.now(UTC))).total_seconds())
    if seconds <= 0:
        return "now"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = (
        [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    )
    return "in " + (" ".join(parts) if parts else f"{seconds}s")


def gate_text(wave: Wave) -> str:
    """``finance-cab x2, it-leads x1; timeout 48h -> reject``."""
    if wave.approval is None:
        return "none"
    gate = wave.approval
    text = ", ".join(f"{g} x{n}" for g, n in gate.groups.items())
    if gate.timeout is not None:
        text += f"; timeout {format_duration(gate.timeout)} -> {gate.on_timeout}"
        if gate.on_timeout == "escalate":
            text += " to " + ", ".join(f"{g} x{n}" for g, n in gate.escalate_to.items())
    return text


@dataclass
class PlanCheckView:
    """``relman plan check``: the validated plan as a readable summary."""

    path: str
    plan: ReleasePlan
    order: list[str]
    schedule: list[Any] = field(default_factory=list)
    now: datetime | None = None

    def to_json(self) -> Any:
        return {
            "plan": self.path,
            "valid": True,
            "release_id": self.plan.id,
            "wave_order": self.order,
            "jobs": {w.name: jobs_view.plan_json(w) for w in self.plan.waves if w.jobs},
            "schedule": [s.to_json() for s in self.schedule],
        }

    def render(self, console: Any) -> None:
        plan = self.plan
        console.print(
            f"[green]OK[/green] {self.path}: release [bold]{plan.id}[/bold] of "
            f"{plan.application} {plan.version}, requested by {plan.requested_by}"
        )
        if plan.description:
            console.print(plan.description)
        table = Table(title="Waves, in order", show_lines=True)
        for column in ("#", "wave", "department", "after", "targets", "gate", "rollout"):
            table.add_column(column)
        for i, name in enumerate(self.order, 1):
            wave = plan.wave(name)
            targets = "\n".join(f"{t} ({plan.target(t).resource})" for t in wave.targets)
            rollout = " -> ".join(f"{p}%" for p in wave.traffic)
            if wave.bake:
                rollout += f", bake {format_duration(wave.bake)}"
            if wave.alarms:
                rollout += f", alarms: {', '.join(wave.alarms)}"
            for check in wave.checks:
                rollout += f"\ncheck {checks_view.summary(check)}"
            for line in jobs_view.plan_lines(wave):
                rollout += f"\n{line}"
            for line in fleet_view.plan_lines(plan, wave):
                rollout += f"\n{line}"
            rollout += f"\non failure: {wave.on_failure}"
            table.add_row(
                str(i),
                name,
                wave.department,
                ", ".join(wave.after) or "-",
                targets,
                gate_text(wave),
                rollout,
            )
        console.print(table)
        for freeze in plan.freezes:
            console.print(f"freeze {when(freeze.start)} -> {when(freeze.end)}: {freeze.reason}")
        if self.schedule and self.now is not None:
            self._render_schedule(console)

    def _render_schedule(self, console: Any) -> None:
        from client.schedule import timeline_rows

        table = Table(
            title=f"Projected schedule if submitted {when(self.now)} "
            "(gates assumed to pass at once)"
        )
        for column in ("wave", "window", "could start", "done by", "held by"):
            table.add_column(column)
        for s in self.schedule:  # times in the wave's own time zone beside UTC
            table.add_row(
                s.wave, s.window, s.local_text(s.start), s.local_text(s.end), s.held_by or "-"
            )
        console.print(table)
        assert self.now is not None
        header, rows = timeline_rows(self.plan, self.schedule, self.now.date())
        width = max([len("day (UTC)"), *(len(w) for w, _ in rows)])
        console.print(f"{'day (UTC)':<{width}}  {header}", markup=False)
        for wave, strip in rows:
            console.print(f"{wave:<{width}}  {strip}", markup=False)
        console.print(f"{'':<{width}}  # deploying   . window open   * frozen", markup=False)


@dataclass
class SubmitView:
    """``relman submit``: the id of the started release."""

    release_id: str
    checked: bool = True  # False: the worker did not answer while submit waited

    def to_json(self) -> Any:
        return {"release_id": self.release_id, "checked": self.checked}

    def render(self, console: Any) -> None:
        console.print(self.release_id, markup=False)
        if not self.checked:  # on stderr: stdout is the id alone, for scripts
            from client.output import console as make_console

            make_console(stderr=True).print(
                f"no worker has checked release {self.release_id} yet: `relman status "
                f"{self.release_id}` shows whether its AWS preflight passed",
                markup=False,
            )


def event_what(event: TimelineEvent) -> str:
    """What happened, with the comment, and how the actor was identified when an attester
    (the web console) signed for them: "via console, OIDC subject S from issuer I"."""
    what = event.message + (f' - "{event.comment}"' if event.comment else "")
    attested = event.evidence.payload.attestation() if event.evidence else ""
    return what + (f"\n{attested}" if attested else "")


def _timeline_table(events: list[TimelineEvent], title: str) -> Table:
    table = Table(title=title)
    for column in ("time", "event", "actor", "wave", "what"):
        table.add_column(column)
    for e in events:
        table.add_row(when(e.at), e.kind, e.actor or "-", e.wave or "-", event_what(e))
    return table


@dataclass
class StatusView:
    """``relman status``: phase, waves, targets, pending approvals, recent timeline."""

    status: ReleaseStatus
    timeline_tail: int = 10

    def to_json(self) -> Any:
        return self.status.model_dump(mode="json")

    def render(self, console: Any) -> None:
        st = self.status
        header = Text.assemble(
            (st.release_id, "bold"), f"  {st.application} {st.version}  ", phase_text(st.phase)
        )
        console.print(header)
        if st.error:
            console.print(f"[red]error:[/red] {st.error}", highlight=False)
        if st.paused:
            console.print("[yellow]paused by an operator[/yellow]")
        if st.policy is not None:
            console.print(policy_line(st.policy), markup=False)
        waves = Table(title="Waves")
        for column in ("wave", "department", "phase", "gate", "target", "state", "traffic",
                       "before", "after"):  # fmt: skip
            waves.add_column(column)
        for w in st.waves:
            gate = ", ".join(f"{a.approver} {a.decision}" for a in w.approvals) or (
                "-" if not w.required_approvals else "none yet"
            )
            wave_phase = phase_text(w.phase)
            if w.error:  # why it failed (or why it waits for an operator)
                wave_phase.append(f"\n{w.error}", style="red")
                # what became of its targets: a failed wave's may have been rolled back
                if note := targets_note(w):
                    wave_phase.append(f"\n{note}", style="yellow")
            elif w.waiting_for and w.phase not in WAVE_END_PHASES:
                wave_phase.append(f"\n{w.waiting_for}", style="dim")
            for i, t in enumerate(w.targets):
                first = i == 0
                waves.add_row(
                    w.name if first else "",
                    w.department if first else "",
                    wave_phase if first else Text(""),
                    gate if first else "",
                    f"{t.name}\n{t.resource}",
                    phase_text(t.phase),
                    f"{t.percent}%",
                    t.before or "-",
                    (t.after or "-") + (f"\n{t.error}" if t.error else ""),
                )
        console.print(waves)
        for p in st.pending_approvals:
            missing = ", ".join(f"{n} more from {g}" for g, n in p.missing.items())
            who = ", ".join(p.eligible_approvers) or "nobody eligible"
            deadline = f"; deadline {when(p.deadline)}" if p.deadline else ""
            console.print(f"waiting on wave [bold]{p.wave}[/bold]: {missing} ({who}){deadline}")
        for w in st.waves:
            if w.next_start:
                # in the wave's own time zone (its window's) beside UTC
                console.print(
                    f"wave [bold]{w.name}[/bold] next starts {countdown(w.next_start)}: "
                    f"{local_and_utc(w.next_start, w.timezone)}",
                    highlight=False,
                )
        for w in st.waves:
            for c in w.checks:
                console.print(checks_view.result_line(w.name, c), markup=False, highlight=False)
        for w in st.waves:
            for j in w.jobs:
                console.print(jobs_view.status_line(w.name, j), markup=False, highlight=False)
        for w in st.waves:
            for t in w.targets:
                for line in fleet_view.status_lines(w.name, t):
                    console.print(line, markup=False, highlight=False)
        for f in st.freezes:
            console.print(f"freeze {when(f.start)} -> {when(f.end)}: {f.reason}")
        tail = st.timeline[len(st.timeline) - self.timeline_tail :] if self.timeline_tail else []
        total = len(st.timeline) if st.timeline_total is None else st.timeline_total
        console.print(_timeline_table(tail, f"Latest events ({len(tail)} of {total})"))


def targets_note(wave: WaveStatus) -> str | None:
    """What became of a failed wave's targets, unless its error already ends saying so."""
    note = wave.targets_note
    if note and not (wave.error or "").endswith(note):
        return note
    return None


def policy_line(policy: PolicyInfo) -> str:
    """How status names the organisation policy a release runs under."""
    if policy.dev:
        return f"policy: dev policy {policy.version} (the local stack's; not for production)"
    return f"policy: {policy.version} ({policy.digest[:19]}) from {policy.source}"


@dataclass
class HistoryView:
    """``relman history``: the complete audit timeline."""

    status: ReleaseStatus

    def to_json(self) -> Any:
        return {
            "release_id": self.status.release_id,
            "phase": self.status.phase.value,
            "plan_digest": self.status.plan_digest,
            "timeline": [e.model_dump(mode="json") for e in self.status.timeline],
        }

    def render(self, console: Any) -> None:
        st = self.status
        console.print(_timeline_table(st.timeline, f"{st.release_id}: {st.phase.value}"))


@dataclass
class VerifiedHistoryView:
    """``relman history --verify``: the timeline, each signed decision re-verified.

    Its JSON is the audit record: the events with their evidence (payload, signature,
    policy digest), the policy versions used and the verdicts, which ``--file`` reads back
    to verify again with no Temporal at all.
    """

    status: ReleaseStatus
    policies: list[Policy]
    verdicts: list[Verdict]

    @property
    def verified(self) -> bool:
        """Every signed decision verified."""
        return all(v.verified for v in self.verdicts)

    def to_json(self) -> Any:
        return HistoryView(self.status).to_json() | {
            "verified": self.verified,
            "verification": [v.model_dump(mode="json") for v in self.verdicts],
            "policies": [p.model_dump(mode="json", exclude_defaults=True) for p in self.policies],
        }

    @staticmethod
    def read(path: Path) -> tuple[ReleaseStatus, list[Policy]]:
        """The release and the policies of an exported record (this view's JSON)."""
        import json

        from pydantic import TypeAdapter, ValidationError

        from common.errors import BadInput
        from models.policy import PolicyError, parse_policy

        try:
            data = json.loads(path.read_text())
            events = TypeAdapter(list[TimelineEvent]).validate_python(data["timeline"])
            status = ReleaseStatus(
                release_id=data["release_id"],
                application="",
                version="",
                requested_by="",
                phase=data.get("phase", "pending"),
                plan_digest=data.get("plan_digest"),
                timeline=events,
            )
            policies = [parse_policy(p, f"{path}: policies") for p in data.get("policies", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{path}: not a relman audit record: {exc}") from None
        except (ValidationError, PolicyError) as exc:
            raise BadInput(f"{path}: not a relman audit record: {exc}") from None
        return status, policies

    def render(self, console: Any) -> None:
        st = self.status
        verdicts = {v.index: v for v in self.verdicts}
        table = Table(title=f"{st.release_id}: {st.phase.value}, signatures re-verified")
        for column in ("time", "event", "actor", "wave", "what", "signature"):
            table.add_column(column)
        for i, e in enumerate(st.timeline):
            what = event_what(e)
            v = verdicts.get(i)
            mark = Text("-")
            if v is not None:
                mark = Text(v.outcome, style=_VERDICT_STYLE[v.outcome])
                mark.append(f": {v.reason}" if v.reason else "")
            table.add_row(when(e.at), e.kind, e.actor or "-", e.wave or "-", what, mark)
        console.print(table)
        for p in self.policies:
            dev = " (dev policy)" if p.dev else ""
            console.print(f"policy {p.version} {p.digest}{dev}", markup=False)
        failed = [v for v in self.verdicts if not v.verified]
        if failed:
            console.print(
                f"[red]{len(failed)} of {len(self.verdicts)} signed decision(s) do not verify[/red]"
            )
        else:
            console.print(f"[green]all {len(self.verdicts)} signed decision(s) verify[/green]")


_VERDICT_STYLE = {"verified": "green", "failed": "bold red", "unverifiable": "yellow"}


@dataclass
class ListView:
    """``relman list``."""

    releases: list[Any]

    def to_json(self) -> Any:
        return [r.model_dump(mode="json") for r in self.releases]

    def render(self, console: Any) -> None:
        if not self.releases:
            console.print("no releases match")
            return
        table = Table()
        for column in ("release", "application", "version", "phase", "requested by", "started"):
            table.add_column(column)
        for r in self.releases:
            table.add_row(
                r.release_id,
                r.application or "-",
                r.version or "-",
                phase_text(r.phase),
                r.requested_by or "-",
                when(r.started_at),
            )
        console.print(table)


@dataclass
class ApprovalsView:
    """``relman approvals``: gates this user may decide."""

    user: str
    items: list[Any]
    # Releases that list the user as a pending approver but could not be asked: the
    # command fails naming them, so "nothing is waiting" is never said for want of asking.
    unreadable: list[Any] = field(default_factory=list)

    def to_json(self) -> Any:
        return [i.model_dump(mode="json") for i in self.items]

    def render(self, console: Any) -> None:
        if not self.items:
            if not self.unreadable:
                console.print(f"nothing is waiting for {self.user}")
            return
        table = Table(title=f"Waiting for {self.user}")
        for column in ("release", "application", "wave", "still needs", "deadline"):
            table.add_column(column)
        for i in self.items:
            missing = ", ".join(f"{n} from {g}" for g, n in i.pending.missing.items())
            table.add_row(
                i.release_id,
                f"{i.application} {i.version}",
                i.pending.wave,
                missing,
                when(i.pending.deadline),
            )
        console.print(table)


@dataclass
class DecisionView:
    """``relman approve`` / ``reject``."""

    release_id: str
    result: DecisionResult

    def to_json(self) -> Any:
        return {"release_id": self.release_id, **self.result.model_dump(mode="json")}

    def render(self, console: Any) -> None:
        console.print(f"{self.release_id} wave {self.result.wave}: {self.result.message}")


@dataclass
class PlanIamView:
    """``relman plan iam``: each set of credentials' permission policy, each assumed role's
    trust policy, and the grants left wide for want of what AWS would have told."""

    path: str
    release_id: str
    policies: list[Any]  # models.iam.IamPolicy, imported lazily like the command does

    def to_json(self) -> Any:
        return [policy.to_json() for policy in self.policies]

    def render(self, console: Any) -> None:
        import json

        from models.iam import SOURCE_IDENTITY_PATTERN, WORKER_ACCOUNT

        def print_json(document: dict[str, Any]) -> None:
            # soft_wrap: a long ARN must not be broken, so the JSON can be copied as is.
            console.print(
                json.dumps(document, indent=2), markup=False, highlight=False, soft_wrap=True
            )

        trusts = sum(1 for p in self.policies if p.trust is not None)
        count = len(self.policies)
        console.print(
            f"{self.path}: release [bold]{self.release_id}[/bold] needs {count} IAM "
            f"{'policy' if count == 1 else 'policies'}"
            + (f" and {trusts} trust {'policy' if trusts == 1 else 'policies'}" if trusts else "")
        )
        for policy in self.policies:
            console.print()
            if policy.role_arn is None:
                heading = f"The worker's own credentials (account {WORKER_ACCOUNT})"
            else:
                heading = f"Role {policy.role_arn} (account {policy.account})"
            console.print(Text(heading, style="bold"))
            for use in policy.used_by:
                console.print(f"  for {use}", markup=False)
            console.print("Permission policy:")
            print_json(policy.document())
            for wildcard in policy.wildcards:
                console.print(Text(f"  wildcard: {wildcard}", style="yellow"))
            if policy.trust is not None:
                console.print(f"Trust policy (who may assume {policy.role_arn}):", markup=False)
                print_json(policy.trust.document())
        console.print()
        console.print(
            f"{WORKER_ACCOUNT} is an IAM policy variable: IAM fills in the account of the "
            "credentials the policy is attached to. Region * where the plan names none.",
            markup=False,
        )
        if trusts:
            console.print(
                f"The worker assumes each role with SourceIdentity relman-<release id>, which "
                f"CloudTrail records on every call made with it; the trust policies require "
                f"{SOURCE_IDENTITY_PATTERN} and allow sts:SetSourceIdentity.",
                markup=False,
            )
        if any(policy.wildcards for policy in self.policies):
            console.print(
                "To narrow a wildcard, run `relman plan iam` again without --offline, with "
                "credentials the target's role trusts (the worker's).",
                markup=False,
            )


@dataclass
class KnownReleaseView:
    """``relman status`` / ``history`` of a running release no worker answers for: what
    Temporal itself knows of it (``client.service.VisibleRelease``)."""

    release: Any

    def to_json(self) -> Any:
        return self.release.model_dump(mode="json")

    def render(self, console: Any) -> None:
        r = self.release
        console.print(
            Text.assemble(
                (r.release_id, "bold"),
                f"  {r.application or '-'} {r.version or '-'}  ",
                phase_text(r.phase),
                ("  (as Temporal's visibility last recorded it)", "dim"),
            )
        )
        for label, value in (
            ("requested by", r.requested_by or "-"),
            ("started", when(r.started_at)),
            ("pending approvers", ", ".join(r.pending_approvers) or "-"),
            ("departments", ", ".join(r.departments) or "-"),
            ("plan digest", r.plan_digest or "-"),
        ):
            console.print(f"{label}: {value}", markup=False, highlight=False)
        console.print(Text(r.note, style="yellow"))


@dataclass
class QueuedView:
    """A decision sent with ``--queue-until-worker`` that no worker has taken yet."""

    release_id: str
    message: str

    def to_json(self) -> Any:
        return {"release_id": self.release_id, "queued": True, "message": self.message}

    def render(self, console: Any) -> None:
        console.print(f"{self.release_id}: {self.message}", markup=False, highlight=False)
