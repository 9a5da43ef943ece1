"""The organisation policy: who is who in relman and what each application may do.

The platform team owns it, outside every plan. A plan says *what* to release and *which
groups* gate each wave; the policy says who is in those groups, who may operate releases,
which AWS roles and notification targets each application may use, and which freezes apply
to everyone. A requester therefore can never choose their own approvers or widen their own
reach. The worker reads the policy through ``activities.policy`` (``RELMAN_POLICY``).

Shape, as YAML::

    version: "2026-03-01.1"          # the platform team's name for this version
    people:
      - id: bob
        name: Bob Builder
        ssh_keys: ["ssh-ed25519 AAAA... bob@laptop"]
        oidc: {issuer: "https://login.example.com", subject: "00u1bob"}
    groups:
      finance-cab: [bob, carol]
    operator_groups: [release-managers]  # may operate every application's releases
    attesters:                           # the web console, signing for people after SSO
      - {name: console, ssh_key: "ssh-ed25519 AAAA..."}
    applications:
      payments:
        approvers: {finance: [finance-cab], "*": [cab]}
        operator_groups: [payments-oncall]
        allow_self_approval: false
        aws_roles: ["arn:aws:iam::123456789012:role/relman-payments"]
        aws_accounts: ["210987654321"]
        sns_topics: ["arn:aws:sns:eu-central-1:123456789012:payments-releases"]
        webhook_hosts: [hooks.example.com, "*.chat.example.com"]
        check_hosts: ["*.internal.example.com"]   # hosts http checks may probe
      "*": {}                             # every application not listed above
    freezes:
      - {start: 2026-12-20T00:00:00Z, end: 2027-01-04T00:00:00Z, reason: year-end freeze}

Lookups: an application's entry, if present, applies *instead of* the ``"*"`` entry (they
are not merged); an application with neither may do nothing. Within an entry, the groups
under ``approvers`` for a wave's department apply, else those under ``"*"``. Operators of
an application are the members of the organisation-wide ``operator_groups`` plus those of
the application's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import sshsig
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from models.canonical import model_digest
from models.checks import HttpCheck
from models.loader import DocumentError, load_yaml_text, read_text_file, validate_document
from models.plan import NAME_PATTERN, Freeze, Notifications, ReleasePlan, check_sns_topic_arn
from models.validation import Problem

ANY = "*"
# Person ids are what people type after --as and what payloads name: logins or e-mails.
PERSON_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"
GROUP_PATTERN = NAME_PATTERN
ROLE_ARN_PATTERN = r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$"
ACCOUNT_PATTERN = r"^\d{12}$"
# Key types sshsig verifies; others (ecdsa, security-key types) could never sign a decision.
SUPPORTED_KEY_TYPES = ("ssh-ed25519", "ssh-rsa")
_HOST_RE = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")

PersonId = Annotated[str, Field(pattern=PERSON_ID_PATTERN)]
GroupName = Annotated[str, Field(pattern=GROUP_PATTERN)]


def _check_ssh_public_key(value: str) -> str:
    """``value`` if it is a single-line OpenSSH public key relman can verify signatures of."""
    text = value.strip()
    kind = text.split(maxsplit=1)[0] if text else ""
    if "\n" in text or kind not in SUPPORTED_KEY_TYPES:
        shown = f"{kind} keys are" if kind.startswith(("ssh-", "ecdsa-", "sk-")) else "this is"
        raise ValueError(
            f"{shown} not supported: write an OpenSSH public key of type "
            f"{' or '.join(SUPPORTED_KEY_TYPES)}, as in id_ed25519.pub"
        )
    try:
        sshsig.PublicKey.from_openssh_str(text)
    except (ValueError, NotImplementedError):
        raise ValueError(f"not a valid {kind} public key (its base64 part is damaged)") from None
    return text


def _check_host(value: str) -> str:
    host = value.lower()
    if not _HOST_RE.match(host):
        raise ValueError(
            f"invalid host {value!r} (a DNS name such as hooks.example.com, or *.example.com "
            "for its subdomains; no scheme, port or path)"
        )
    return host


def _check_issuer(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" and parts.hostname not in ("localhost", "127.0.0.1"):
        raise ValueError("an OIDC issuer is an https:// URL (http:// only on localhost)")
    if not parts.hostname:
        raise ValueError("an OIDC issuer is an https:// URL with a host")
    return value


SshPublicKey = Annotated[
    str,
    AfterValidator(_check_ssh_public_key),
    Field(examples=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... bob@laptop"]),
]
WebhookHost = Annotated[str, AfterValidator(_check_host)]
SnsTopicArn = Annotated[str, AfterValidator(check_sns_topic_arn)]
RoleArn = Annotated[str, Field(pattern=ROLE_ARN_PATTERN)]
AccountId = Annotated[str, Field(pattern=ACCOUNT_PATTERN)]
AppKey = Annotated[str, Field(pattern=rf"{NAME_PATTERN}|^\*$")]


class PolicyModel(BaseModel):
    """Base for policy sections: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OidcIdentity(PolicyModel):
    """Who a person is to the single sign-on provider the web console trusts."""

    issuer: Annotated[str, AfterValidator(_check_issuer)]
    subject: str = Field(min_length=1)


class Person(PolicyModel):
    """Someone who may submit, approve or operate; decisions are signed with their keys."""

    id: PersonId
    name: str = Field(min_length=1, description="display name")
    ssh_keys: list[SshPublicKey] = Field(default_factory=list)
    oidc: OidcIdentity | None = None


class Attester(PolicyModel):
    """A service (the web console) that signs decisions for people it has authenticated."""

    name: GroupName
    ssh_key: SshPublicKey


class ApplicationPolicy(PolicyModel):
    """What releases of one application (or of every unlisted one, under ``"*"``) may do."""

    # department (or "*" for any other department) -> groups whose members may approve
    approvers: dict[str, list[GroupName]] = Field(default_factory=dict)
    operator_groups: list[GroupName] = Field(default_factory=list)
    allow_self_approval: bool = False
    # Roles relman may assume for the application: these ARNs, or any role in these accounts.
    aws_roles: list[RoleArn] = Field(default_factory=list)
    aws_accounts: list[AccountId] = Field(default_factory=list)
    sns_topics: list[SnsTopicArn] = Field(default_factory=list)
    webhook_hosts: list[WebhookHost] = Field(default_factory=list)
    # Hosts the application's http checks may probe (models.checks); same form as above.
    check_hosts: list[WebhookHost] = Field(default_factory=list)

    def approver_groups(self, department: str) -> list[str]:
        """The groups that may approve ``department``'s waves."""
        return self.approvers.get(department, self.approvers.get(ANY, []))

    def allows_role(self, role_arn: str) -> bool:
        """Whether relman may assume ``role_arn`` for this application."""
        account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
        return role_arn in self.aws_roles or account in self.aws_accounts

    def allows_webhook_host(self, host: str) -> bool:
        """Whether notifications may go to ``host`` (``*.example.com`` covers subdomains)."""
        host = host.lower()
        return any(
            host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
            for allowed in self.webhook_hosts
        )

    def allows_check_host(self, host: str) -> bool:
        """Whether http checks may probe ``host`` (``*.example.com`` covers subdomains)."""
        host = host.lower()
        return any(
            host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:]))
            for allowed in self.check_hosts
        )


class Policy(PolicyModel):
    """The organisation policy (see the module docstring for its shape and lookups)."""

    version: str = Field(min_length=1, max_length=128)
    description: str = ""
    # Written by `relman dev up` for the local stack; relman says so wherever it is in use.
    dev: bool = False
    people: list[Person] = Field(min_length=1)
    groups: dict[GroupName, list[PersonId]] = Field(default_factory=dict)
    operator_groups: list[GroupName] = Field(default_factory=list)
    attesters: list[Attester] = Field(default_factory=list)
    applications: dict[AppKey, ApplicationPolicy] = Field(default_factory=dict)
    freezes: list[Freeze] = Field(default_factory=list)

    @cached_property
    def digest(self) -> str:
        """``sha256:<hex>`` of the policy's canonical JSON: names this exact version."""
        return model_digest(self)

    @cached_property
    def _people(self) -> dict[str, Person]:
        return {p.id: p for p in self.people}

    def person(self, person_id: str) -> Person | None:
        """The person with id ``person_id``, if the policy has one."""
        return self._people.get(person_id)

    def members(self, group: str) -> list[str]:
        """The members of ``group`` (none for an unknown group)."""
        return self.groups.get(group, [])

    def application(self, name: str) -> ApplicationPolicy | None:
        """The rules for application ``name``: its own entry, else ``"*"``, else None."""
        return self.applications.get(name, self.applications.get(ANY))

    def role_refusal(self, application: str, role_arn: str) -> str | None:
        """Why relman may not assume ``role_arn`` for ``application`` (None: it may)."""
        rules = self.application(application)
        if rules is not None and rules.allows_role(role_arn):
            return None
        return (
            f"role {role_arn!r} is not allowed for application {application!r} "
            "(the organisation policy lists the roles and accounts relman may assume for it)"
        )


# The activity that loads the policy (activities.policy); its input and result live here,
# beside the policy, because workflows may import models but not activities.
LOAD_POLICY = "load_policy"


class LoadPolicyInput(BaseModel):
    """``known_digest``: the digest the caller holds; an unchanged policy is not sent again."""

    known_digest: str | None = None


class PolicySnapshot(BaseModel):
    """The policy in force: where it came from, its version and digest, and (unless it is
    the one the caller already holds) the policy itself."""

    source: str
    version: str
    digest: str
    dev: bool = False
    policy: Policy | None = None


class PolicyError(DocumentError):
    """A policy that cannot be used; ``problems`` lists each field path and what is wrong."""


# --- loading -------------------------------------------------------------------------------


def _duplicates(values: Iterable[str], path: str, noun: str) -> Iterator[Problem]:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            yield Problem(path.format(i=i), f"duplicate {noun} {value!r}")
        seen.add(value)


def policy_problems(policy: Policy) -> list[Problem]:
    """Every cross-field problem of ``policy``: duplicates and names that lead nowhere."""
    problems = list(_duplicates((p.id for p in policy.people), "people[{i}].id", "person id"))
    problems += _duplicates((a.name for a in policy.attesters), "attesters[{i}].name", "name")
    owners: dict[str, str] = {}
    for i, person in enumerate(policy.people):
        for j, key in enumerate(person.ssh_keys):
            blob = key.split()[1]
            if owners.setdefault(blob, person.id) != person.id:
                problems.append(
                    Problem(
                        f"people[{i}].ssh_keys[{j}]",
                        f"this key is also {owners[blob]!r}'s: a key identifies one person",
                    )
                )
    problems += _duplicates(
        (f"{p.oidc.issuer} {p.oidc.subject}" for p in policy.people if p.oidc),
        "people[{i}].oidc",
        "OIDC issuer and subject",
    )
    for group, members in policy.groups.items():
        for i, member in enumerate(members):
            if policy.person(member) is None:
                problems.append(Problem(f"groups.{group}[{i}]", f"unknown person {member!r}"))

    def known_groups(path: str, groups: list[str]) -> Iterator[Problem]:
        for i, group in enumerate(groups):
            if group not in policy.groups:
                yield Problem(f"{path}[{i}]", f"unknown group {group!r}")

    problems += known_groups("operator_groups", policy.operator_groups)
    for app, rules in policy.applications.items():
        for department, groups in rules.approvers.items():
            problems += known_groups(f"applications.{app}.approvers.{department}", groups)
        problems += known_groups(f"applications.{app}.operator_groups", rules.operator_groups)
    return problems


def parse_policy(data: Any, source: str = "<policy>") -> Policy:
    """Validate already-parsed policy data: field types first, then cross-field rules."""
    if not isinstance(data, dict):
        raise PolicyError(source, [Problem("", "a policy must be a mapping of fields")])
    return validate_document(data, source, Policy, policy_problems, PolicyError)


def load_policy_text(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate policy text (YAML, or JSON, which YAML reads too)."""
    return parse_policy(load_yaml_text(text, source, "policy", PolicyError), source)


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate the policy file at ``path``."""
    return load_policy_text(read_text_file(path, "policy", PolicyError), str(path))


# --- rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether someone may do something; ``reason`` says why not, ``groups`` which count."""

    allowed: bool
    reason: str = ""
    groups: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.allowed


def eligible_approvers(policy: Policy, application: str, department: str) -> dict[str, list[str]]:
    """The groups that may approve ``department``'s waves of ``application``, with members."""
    rules = policy.application(application)
    if rules is None:
        return {}
    return {group: policy.members(group) for group in rules.approver_groups(department)}


def is_operator(policy: Policy, application: str, actor: str) -> bool:
    """Whether ``actor`` may operate ``application``'s releases (pause, abort, override...)."""
    rules = policy.application(application)
    groups = policy.operator_groups + (rules.operator_groups if rules else [])
    return any(actor in policy.members(group) for group in groups)


def may_approve(
    policy: Policy,
    application: str,
    department: str,
    actor: str,
    *,
    requester: str,
    gate_groups: Iterable[str] | None = None,
) -> Verdict:
    """Whether ``actor`` may approve (or reject) a ``department`` wave of ``application``.

    ``gate_groups`` are the groups the plan's gate names; the approval counts for those of
    them the policy lets approve the department and ``actor`` is a member of (all such
    groups when None).
    """
    if policy.person(actor) is None:
        return Verdict(False, f"{actor!r} is not a person in the organisation policy")
    rules = policy.application(application)
    if rules is None:
        return Verdict(False, f"application {application!r} is not in the organisation policy")
    if actor == requester and not rules.allow_self_approval:
        return Verdict(
            False,
            f"{actor!r} requested this release and may not approve it (application "
            f"{application!r} does not allow self-approval)",
        )
    allowed = rules.approver_groups(department)
    wanted = allowed if gate_groups is None else [g for g in gate_groups if g in allowed]
    counted = tuple(g for g in wanted if actor in policy.members(g))
    if not counted:
        groups = ", ".join(repr(g) for g in wanted) or "(none)"
        return Verdict(
            False,
            f"{actor!r} is in none of the groups that may approve department "
            f"{department!r} waves of {application!r} here: {groups}",
        )
    return Verdict(True, groups=counted)


def _gate_violations(
    policy: Policy, plan: ReleasePlan, path: str, department: str, groups: dict[str, int]
) -> Iterator[str]:
    rules = policy.application(plan.application)
    allowed = rules.approver_groups(department) if rules else []
    self_ok = rules is not None and rules.allow_self_approval
    for group, needed in groups.items():
        where = f"{path}.{group}"
        if group not in policy.groups:
            yield f"{where}: unknown group {group!r} (the organisation policy has no such group)"
        elif group not in allowed:
            shown = ", ".join(repr(g) for g in allowed) or "none"
            yield (
                f"{where}: group {group!r} may not approve department {department!r} waves of "
                f"{plan.application!r} (the organisation policy allows: {shown})"
            )
        else:
            eligible = [m for m in policy.members(group) if self_ok or m != plan.requested_by]
            if needed > len(eligible):
                yield (
                    f"{where}: needs {needed} approvals but group {group!r} has only "
                    f"{len(eligible)} eligible approver(s) in the organisation policy"
                )


def _role_violation(plan: ReleasePlan, path: str, role_arn: str | None, policy: Policy) -> str:
    refusal = role_arn and policy.role_refusal(plan.application, role_arn)
    return f"{path}: {refusal}" if refusal else ""


def notification_violations(
    policy: Policy, application: str, notifications: Notifications
) -> list[str]:
    """Why ``policy`` refuses ``application``'s ``notifications``: a topic or webhook host it
    does not list for the application (checked at submit, and again at each send)."""
    rules = policy.application(application)
    out = []
    topic = notifications.sns_topic_arn
    if topic and (rules is None or topic not in rules.sns_topics):
        out.append(
            f"notifications.sns_topic_arn: topic {topic!r} is not one the organisation "
            f"policy lets {application!r} notify"
        )
    host = urlsplit(notifications.webhook_url).hostname if notifications.webhook_url else None
    if host and (rules is None or not rules.allows_webhook_host(host)):
        out.append(
            f"notifications.webhook_url: host {host!r} is not one the organisation policy "
            f"lets {application!r} notify"
        )
    return out


def plan_violations(plan: ReleasePlan, policy: Policy) -> list[str]:
    """Why ``policy`` refuses ``plan`` at submit, each naming the plan field and the rule.

    Plans name groups only: members, operator groups and self-approval come from the
    policy, and every role, SNS topic and webhook host must be one the policy allows for
    the plan's application. Freezes in a plan only add to the policy's, so they pass.
    """
    app = plan.application
    rules = policy.application(app)
    if rules is None:
        return [
            f"application: application {app!r} is not in the organisation policy "
            f"(and it has no {ANY!r} entry)"
        ]
    out: list[str] = []
    if policy.person(plan.requested_by) is None:
        out.append(
            f"requested_by: {plan.requested_by!r} is not a person in the organisation policy"
        )
    for group in plan.approver_groups:
        out.append(
            f"approver_groups.{group}: plans name groups only; who is in {group!r} is up to "
            "the organisation policy"
        )
    if plan.operator_groups:
        out.append(
            "operator_groups: plans may not name operators; the organisation policy says who "
            f"operates {app!r} releases"
        )
    if plan.allow_self_approval and not rules.allow_self_approval:
        out.append(
            f"allow_self_approval: the organisation policy does not allow self-approval for {app!r}"
        )
    for i, wave in enumerate(plan.waves):
        if wave.approval is not None:
            path = f"waves[{i}].approval"
            department = wave.department
            out += _gate_violations(
                policy, plan, f"{path}.groups", department, wave.approval.groups
            )
            out += _gate_violations(
                policy, plan, f"{path}.escalate_to", department, wave.approval.escalate_to
            )
    roles = [(f"departments.{name}.role_arn", d.role_arn) for name, d in plan.departments.items()]
    roles += [(f"targets[{i}].role_arn", t.role_arn) for i, t in enumerate(plan.targets)]
    notifications = plan.notifications
    if notifications is not None:
        roles.append(("notifications.role_arn", notifications.role_arn))
        out += notification_violations(policy, app, notifications)
    for i, wave in enumerate(plan.waves):
        for j, check in enumerate(wave.checks):
            path = f"waves[{i}].checks[{j}]"
            roles.append((f"{path}.role_arn", check.role_arn))
            host = urlsplit(check.url).hostname if isinstance(check, HttpCheck) else None
            if host and not rules.allows_check_host(host):
                out.append(
                    f"{path}.url: host {host!r} is not one the organisation policy lets "
                    f"{app!r} checks probe (check_hosts)"
                )
    out += [v for path, role in roles if (v := _role_violation(plan, path, role, policy))]
    return out
