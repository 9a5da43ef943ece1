"""The console's ASGI application: Starlette routes rendering Jinja2 templates.

Every page is rendered on the server and every form posts without JavaScript; the live
part of a release page is fetched again every ``LIVE_REFRESH_SECONDS`` by a few lines of
script (a meta refresh without it). Decisions go through ``client.service`` as the CLI's
do, so a release refuses them with the same reasons.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from temporalio.service import RPCError

import client.fleet_view as fleet_view
import client.jobs_view as jobs_view
from activities.aws import AwsClients
from activities.policy import PolicyReader
from client import service
from client.views import targets_note
from common.errors import CliError
from console.changes import in_zone, planned_values, wave_window
from console.current import CurrentValues, Wanted
from console.data import approvals_page, release_page, release_plan
from console.graph import NODE_HEIGHT, NODE_WIDTH, layout
from console.oidc import Pending, Provider, SignInError
from console.settings import ConsoleSettings
from models.checks import result_state
from models.messages import (
    DecisionMessage,
    FreezeInput,
    OperatorInput,
    OverrideInput,
    TargetActionInput,
    WaveActionInput,
)
from models.policy import Policy, is_operator
from workflows.fleet import counts

LIVE_REFRESH_SECONDS = 2
# How long a console request waits for a worker to answer for a release.
WORKER_WAIT_SECONDS = 5.0
SESSION_COOKIE = "relman_console"
TEMPLATES = Path(__file__).parent / "templates"
# Operator actions: form value -> (client.service operation, label, what else it asks for).
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "pause": ("pause", "Pause", ""),
    "resume": ("resume", "Resume", ""),
    "abort": ("abort", "Abort", ""),
    "freeze_add": ("add_freeze", "Add freeze", "freeze"),
    "override_window": ("override_window", "Override window", "wave"),
    "retry": ("retry", "Retry wave", "wave"),
    "rollback": ("rollback", "Roll back wave", "wave"),
    "skip_target": ("skip_target", "Skip target", "target"),
}


class Refused(Exception):
    """A request the console answers with ``status`` and a message for the person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Console:
    """The application's state: settings, the organisation policy, the sign-in provider."""

    def __init__(
        self,
        settings: ConsoleSettings,
        policy_source: str | Path,
        aws: AwsClients | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        # AWS as the worker reaches it (RELMAN_AWS_ENDPOINT_URL, boto3's chain): the policy
        # in S3 or SSM, and the current values of the targets a gate will change.
        self.aws = (aws or AwsClients.from_env()).for_purpose("console")
        # The worker's own reader: a file looked at every second, S3 and SSM read again
        # every 30 s, and a policy that stops validating leaves the last good one in force.
        self.policy_reader = PolicyReader(str(policy_source), self.aws, clock)
        self._policy: Policy | None = None
        self.current = CurrentValues(self.aws.checked_by(self._role_refusal))
        self.provider = (
            Provider(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret)
            if settings.oidc_issuer and settings.oidc_client_id
            else None
        )
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"])
        )
        self.templates.filters["when"] = _when
        self.templates.filters["in_zone"] = in_zone
        # A wave's checks, jobs and fleet instances in the words `relman status` uses.
        self.templates.globals.update(
            check_state=result_state,
            job_outcome=jobs_view.outcome,
            compensation_text=jobs_view.compensation_text,
            fleet_counts=counts,
            fleet_size=fleet_view.size,
            shown_instances=fleet_view.shown,
            all_shown=fleet_view.ALL_SHOWN,
            instance_phase=fleet_view.phase_words,
            command_result=fleet_view.command_result,
            targets_note=targets_note,
        )

    @property
    def policy(self) -> Policy:
        """The organisation policy as this request found it (:meth:`refresh_policy`)."""
        if self._policy is None:
            self._policy = self.policy_reader.current()
        return self._policy

    async def refresh_policy(self) -> None:
        """Read the policy again if it is due, off the event loop (S3 and SSM are remote)."""
        self._policy = await asyncio.to_thread(self.policy_reader.current)

    def _role_refusal(self, application: str, role_arn: str) -> str | None:
        return self.policy.role_refusal(application, role_arn)

    @property
    def dev_signin(self) -> bool:
        """The labelled development sign-in: only with a dev policy, only when asked for."""
        return self.settings.dev_signin and self.policy.dev

    # --- sessions ------------------------------------------------------------------------

    def person(self, request: Request) -> str | None:
        """The signed-in person, if the session is current; an expired one is cleared."""
        session = request.session
        at = session.get("at")
        if not session.get("person") or not isinstance(at, (int, float)):
            return None
        if time.time() - at > self.settings.session_lifetime:
            self._sign_out(request)
            return None
        if self.policy.person(session["person"]) is None:
            return None
        return str(session["person"])

    def csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = secrets.token_urlsafe(32)
        return str(token)

    async def form(self, request: Request) -> dict[str, str]:
        """The posted form, once its CSRF token matches the session's (else 403)."""
        form = await request.form()
        sent = str(form.get("csrf_token", ""))
        expected = request.session.get("csrf") or ""
        if not sent or not expected or not hmac.compare_digest(sent, expected):
            raise Refused(403, "the form's CSRF token is missing or stale: reload the page")
        return {k: str(v) for k, v in form.items()}

    def _sign_out(self, request: Request) -> None:
        request.session.clear()

    def _signed_in(self, request: Request, person: str, **identity: str) -> None:
        request.session.clear()
        request.session.update(
            person=person, at=time.time(), csrf=secrets.token_urlsafe(32), **identity
        )

    # --- rendering -----------------------------------------------------------------------

    def render(
        self, request: Request, template: str, http_status: int = 200, **context: Any
    ) -> Response:
        person = self.person(request)
        html = self.templates.get_template(template).render(
            request=request,
            person=person,
            person_name=(p.name if person and (p := self.policy.person(person)) else None),
            via=request.session.get("via"),
            csrf_token=self.csrf(request),
            dev=self.policy.dev,
            refresh=LIVE_REFRESH_SECONDS,
            **context,
        )
        return HTMLResponse(html, status_code=http_status)

    # --- decisions -----------------------------------------------------------------------

    def signing(self, request: Request) -> tuple[Path, dict[str, str] | None]:
        """The key a decision by the signed-in person is signed with, and the attestation.

        After single sign-on the console signs as the policy's attester, naming the OIDC
        identity it verified; after the dev sign-in, the person's own dev key signs (as the
        CLI does on the embedded stack).
        """
        session = request.session
        person = str(session["person"])
        if session.get("via") == "dev":
            from client.identity import key_for

            return key_for(person), None
        key = self.settings.attester_key
        if key is None:
            raise Refused(
                503, "the console has no signing key (RELMAN_CONSOLE_KEY): it cannot sign decisions"
            )
        return key, {
            "via": self.settings.attester_name,
            "oidc_issuer": str(session["issuer"]),
            "oidc_subject": str(session["subject"]),
        }


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def _safe_next(url: str | None) -> str:
    """A local path to return to after sign-in (never another site)."""
    if not url or not url.startswith("/") or url.startswith("//") or urlsplit(url).netloc:
        return "/approvals"
    return url


Handler = Callable[[Console, Request], Awaitable[Response]]


def page(handler: Handler, console: Console, signed_in: bool = True) -> Callable[..., Any]:
    """A route for ``handler``: signed-in only unless told otherwise, refusals rendered."""

    async def endpoint(request: Request) -> Response:
        try:
            await console.refresh_policy()
            if signed_in and console.person(request) is None:
                if request.method != "GET":
                    raise Refused(401, "your session has ended: sign in again")
                target = quote(
                    request.url.path + (f"?{request.url.query}" if request.url.query else "")
                )
                return RedirectResponse(f"/signin?next={target}", status_code=303)
            return await handler(console, request)
        except Refused as refused:
            return console.render(request, "error.html", refused.status, message=refused.message)

    return endpoint


# --- sign-in ---------------------------------------------------------------------------------


async def signin(console: Console, request: Request) -> Response:
    return console.render(
        request,
        "signin.html",
        next_url=_safe_next(request.query_params.get("next")),
        oidc=console.provider is not None,
        dev_signin=console.dev_signin,
        people=console.policy.people if console.dev_signin else [],
        error=request.query_params.get("error"),
    )


def _callback_url(console: Console, request: Request) -> str:
    return f"{console.settings.public_url}/auth/callback"


async def oidc_start(console: Console, request: Request) -> Response:
    if console.provider is None:
        raise Refused(404, "single sign-on is not configured (RELMAN_CONSOLE_OIDC_ISSUER)")
    next_url = _safe_next(request.query_params.get("next"))
    try:
        url, pending = await console.provider.start(_callback_url(console, request), next_url)
    except SignInError as exc:
        raise Refused(502, str(exc)) from None
    request.session["oidc"] = pending.__dict__
    return RedirectResponse(url, status_code=303)


async def oidc_callback(console: Console, request: Request) -> Response:
    if console.provider is None:
        raise Refused(404, "single sign-on is not configured")
    kept = request.session.pop("oidc", None)
    params = request.query_params
    if not kept or not hmac.compare_digest(params.get("state", ""), kept.get("state", "")):
        raise Refused(400, "this sign-in was not started here, or has already been used")
    if "error" in params:
        raise Refused(401, f"the sign-in provider refused: {params.get('error')}")
    pending = Pending(**kept)
    try:
        identity = await console.provider.finish(
            params.get("code", ""), _callback_url(console, request), pending
        )
    except SignInError as exc:
        raise Refused(401, str(exc)) from None
    person = next(
        (
            p
            for p in console.policy.people
            if p.oidc
            and p.oidc.subject == identity.subject
            and p.oidc.issuer.rstrip("/") == identity.issuer.rstrip("/")
        ),
        None,
    )
    if person is None or person.oidc is None:
        raise Refused(
            403,
            f"OIDC subject {identity.subject} from issuer {identity.issuer} is not a person in "
            "the organisation policy",
        )
    console._signed_in(
        request, person.id, via="oidc", issuer=person.oidc.issuer, subject=identity.subject
    )
    return RedirectResponse(pending.next_url, status_code=303)


async def dev_signin(console: Console, request: Request) -> Response:
    if not console.dev_signin:
        raise Refused(404, "the development sign-in exists only in the embedded dev stack")
    form = await console.form(request)
    person = form.get("person", "")
    if console.policy.person(person) is None:
        raise Refused(400, f"unknown person {person!r}")
    console._signed_in(request, person, via="dev")
    return RedirectResponse(_safe_next(form.get("next")), status_code=303)


async def signout(console: Console, request: Request) -> Response:
    await console.form(request)
    console._sign_out(request)
    return RedirectResponse("/signin", status_code=303)


# --- pages -----------------------------------------------------------------------------------


async def home(console: Console, request: Request) -> Response:
    return RedirectResponse("/approvals", status_code=303)


async def approvals(console: Console, request: Request) -> Response:
    person = str(console.person(request))
    try:
        found = await approvals_page(
            person, request.query_params.get("page") or None, WORKER_WAIT_SECONDS
        )
    except (CliError, RPCError, ValueError) as exc:
        raise Refused(502, f"cannot list your approvals: {exc}") from None
    gates = []
    wanted: list[Wanted] = []
    for gate in found.gates:
        name = gate.waiting.pending.wave
        release_id = gate.waiting.release_id
        plan = await release_plan(release_id)
        plan_wave = wave_window(plan, name)
        if plan is not None and plan_wave is not None:
            wanted += [
                Wanted(release_id, gate.waiting.application, plan.target(t))
                for t in plan_wave.targets
            ]
        gates.append(
            {
                "waiting": gate.waiting,
                "wave": next((w for w in gate.status.waves if w.name == name), None),
                "planned": planned_values(plan, name),
                "plan_wave": plan_wave,
            }
        )
    current = await console.current.read(wanted)
    return console.render(
        request,
        "approvals.html",
        gates=gates,
        current=current,
        unreadable=found.unreadable,
        next_token=found.next_token,
        message=request.query_params.get("message"),
    )


FILTERS = ("application", "phase", "department", "requester")


async def releases(console: Console, request: Request) -> Response:
    filters = {k: (request.query_params.get(k) or "").strip() or None for k in FILTERS}
    try:
        listed = await release_page(filters, request.query_params.get("page") or None)
    except (CliError, RPCError, ValueError) as exc:
        raise Refused(502, f"cannot list releases: {exc}") from None
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
    return console.render(request, "releases.html", page=listed, filters=filters, query=query)


async def _release_context(console: Console, request: Request) -> dict[str, Any]:
    release_id = request.path_params["release_id"]
    person = str(console.person(request))
    try:
        status = await service.status(release_id, 50, WORKER_WAIT_SECONDS)
    except CliError as exc:
        raise Refused(404 if "unknown release" in str(exc) else 502, str(exc)) from None
    may_approve = {p.wave for p in status.pending_approvals if person in p.eligible_approvers}
    operator = is_operator(console.policy, status.application, person)
    plan = await release_plan(release_id)
    return {
        "status": status,
        "planned": {w.name: planned_values(plan, w.name) for w in status.waves},
        "plan_waves": {w.name: wave_window(plan, w.name) for w in status.waves},
        "graph": layout(status.waves),
        "node_width": NODE_WIDTH,
        "node_height": NODE_HEIGHT,
        "may_approve": may_approve,
        "operator": operator,
        "operations": OPERATIONS,
        "ended": status.finished_at is not None,
        "message": request.query_params.get("message"),
    }


async def release(console: Console, request: Request) -> Response:
    return console.render(request, "release.html", **await _release_context(console, request))


async def release_live(console: Console, request: Request) -> Response:
    return console.render(request, "release_live.html", **await _release_context(console, request))


async def decide(console: Console, request: Request) -> Response:
    form = await console.form(request)
    release_id = request.path_params["release_id"]
    decision = form.get("decision")
    if decision not in ("approve", "reject"):
        raise Refused(400, "decision: approve or reject")
    wave = form.get("wave", "")
    key, attestation = console.signing(request)
    try:
        result = await service.decide(
            release_id,
            wave,
            str(console.person(request)),
            form.get("comment", ""),
            decision == "approve",
            key,
            wait=WORKER_WAIT_SECONDS,
            attestation=attestation,
        )
    except CliError as exc:
        raise Refused(403, str(exc)) from None
    message = getattr(result, "message", "")
    back = form.get("back") or f"/releases/{quote(release_id)}"
    return RedirectResponse(f"{_safe_next(back)}?message={quote(message)}", status_code=303)


def _operator_input(action: str, actor: str, form: dict[str, str]) -> DecisionMessage:
    reason = form.get("reason", "").strip()
    if not reason:
        raise Refused(400, "reason: say why (it is recorded in the release's timeline)")
    if form.get("confirm") != "yes":
        raise Refused(400, "confirm: tick the box to confirm the action")
    extra = OPERATIONS[action][2]
    try:
        if extra == "wave" and action == "override_window":
            return OverrideInput(
                actor=actor,
                reason=reason,
                wave=form.get("wave", ""),
                include_freeze=form.get("include_freeze") == "yes",
            )
        if extra == "wave":
            return WaveActionInput(actor=actor, reason=reason, wave=form.get("wave", ""))
        if extra == "target":
            return TargetActionInput(actor=actor, reason=reason, target=form.get("target", ""))
        if extra == "freeze":
            return FreezeInput.model_validate(
                {
                    "actor": actor,
                    "reason": reason,
                    "freeze": {
                        "start": form.get("freeze_start"),
                        "end": form.get("freeze_end"),
                        "reason": reason,
                    },
                }
            )
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise Refused(400, f"{where}: {problem['msg']}") from None
    return OperatorInput(actor=actor, reason=reason)


async def operate(console: Console, request: Request) -> Response:
    form = await console.form(request)
    release_id = request.path_params["release_id"]
    action = form.get("action", "")
    if action not in OPERATIONS:
        raise Refused(400, f"action: one of {', '.join(OPERATIONS)}")
    person = str(console.person(request))
    arg = _operator_input(action, person, form)
    key, attestation = console.signing(request)
    try:
        result = await service.operate(
            release_id,
            OPERATIONS[action][0],
            arg,
            key,
            wait=WORKER_WAIT_SECONDS,
            attestation=attestation,
        )
    except CliError as exc:
        raise Refused(403, str(exc)) from None
    message = getattr(result, "message", "")
    return RedirectResponse(
        f"/releases/{quote(release_id)}?message={quote(message)}", status_code=303
    )


def create_app(
    settings: ConsoleSettings,
    policy_source: str | Path,
    aws: AwsClients | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """The console as an ASGI application, reading the organisation policy from
    ``policy_source`` as the worker does (a file, ``s3://bucket/key`` or ``ssm:/name``)."""
    console = Console(settings, policy_source, aws, clock)
    routes = [
        Route("/", page(home, console), methods=["GET"]),
        Route("/signin", page(signin, console, signed_in=False), methods=["GET"]),
        Route("/signin/oidc", page(oidc_start, console, signed_in=False), methods=["GET"]),
        Route("/auth/callback", page(oidc_callback, console, signed_in=False), methods=["GET"]),
        Route("/signin/dev", page(dev_signin, console, signed_in=False), methods=["POST"]),
        Route("/signout", page(signout, console, signed_in=False), methods=["POST"]),
        Route("/approvals", page(approvals, console), methods=["GET"]),
        Route("/releases", page(releases, console), methods=["GET"]),
        Route("/releases/{release_id}", page(release, console), methods=["GET"]),
        Route("/releases/{release_id}/live", page(release_live, console), methods=["GET"]),
        Route("/releases/{release_id}/decide", page(decide, console), methods=["POST"]),
        Route("/releases/{release_id}/operate", page(operate, console), methods=["POST"]),
    ]
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=settings.session_secret,
            session_cookie=SESSION_COOKIE,
            max_age=settings.session_lifetime,
            same_site="lax",
            https_only=settings.secure_cookies,
        )
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        console.current.close()  # AWS reads still running are not waited for

    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.console = console
    return app
