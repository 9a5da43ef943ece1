"""An HTTP proxy between relman's worker and moto that can hold, drop, fail or refuse AWS calls.

The worker reaches AWS through ``RELMAN_AWS_ENDPOINT_URL``; pointing that at this proxy lets a
test act on one exact call (``UpdateAlias`` of one alias at 10 %, say) without touching relman:

- **hold** the first call that matches, until the test forwards it (the write lands in moto,
  whoever sent it may be dead by then) or drops it (the write never arrives);
- **fail** a seeded share of calls with throttling or 503, each in the error shape of the
  service's protocol (JSON, REST-JSON, query XML, RPC v2 CBOR), as AWS would;
- **stop** listening (connection refused, as from an endpoint that is down) and start again;
- **rewrite** moto's answer to matching calls (a task's exit code, an invocation's status, a
  function error, an AWS error), so the worker meets over HTTP a failure moto cannot make.

Every write moto accepted is logged with the state it set, so a test can prove that no change
was applied twice and that traffic never went backwards outside a rollback.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import re
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LOOPBACK = "127.0.0.1"
WRITES = frozenset({"PutParameter", "DeleteParameter", "UpdateAlias", "ModifyListener"})
# Hop-by-hop headers the proxy answers itself.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_ALIAS_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/([^/]+)$")


@dataclass
class Call:
    """One AWS API call as the proxy saw it."""

    service: str
    operation: str
    protocol: str  # json | rest-json | query | cbor
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def is_write(self) -> bool:
        return self.operation in WRITES

    @property
    def is_preflight(self) -> bool:
        """A read-only check of relman's AWS preflight (its clients say so in User-Agent)."""
        agent = next((v for k, v in self.headers.items() if k.lower() == "user-agent"), "")
        return "relman/preflight" in agent

    def json(self) -> dict[str, Any]:
        return json.loads(self.body or b"{}") if self.protocol in ("json", "rest-json") else {}

    def form(self) -> dict[str, str]:
        if self.protocol != "query":
            return {}
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def write_state(self) -> tuple[str, str] | None:
        """``(resource, state)`` this write sets; None for reads."""
        if self.operation in ("PutParameter", "DeleteParameter"):
            data = self.json()
            value = data.get("Value") if self.operation == "PutParameter" else "(deleted)"
            return f"ssm:{data.get('Name')}", str(value)
        if self.operation == "UpdateAlias":
            match = _ALIAS_PATH.match(urlsplit(self.path).path)
            function, alias = (unquote(p) for p in match.groups()) if match else ("?", "?")
            data = self.json()
            weights = (data.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
            state = json.dumps({"version": data.get("FunctionVersion"), "weights": weights})
            return f"lambda:{function}:{alias}", state
        if self.operation == "ModifyListener":
            return f"elbv2:{self.form().get('ListenerArn')}", json.dumps(listener_weights(self))
        return None


def listener_weights(call: Call) -> dict[str, int]:
    """Target group ARN -> weight of a ModifyListener's forward action (query form body)."""
    form = call.form()
    weights = {}
    prefix = "DefaultActions.member.1.ForwardConfig.TargetGroups.member."
    for n in range(1, 6):
        arn = form.get(f"{prefix}{n}.TargetGroupArn")
        if arn:
            weights[arn] = int(form.get(f"{prefix}{n}.Weight", "1"))
    return weights


def _lambda_operation(method: str, path: str) -> str:
    if _ALIAS_PATH.match(path):
        return {"PUT": "UpdateAlias", "GET": "GetAlias", "DELETE": "DeleteAlias"}.get(method, "?")
    if path.endswith("/configuration"):
        return "GetFunctionConfiguration"
    return f"{method} {path}"


def classify(method: str, path: str, headers: dict[str, str], body: bytes) -> Call:
    """Which service, operation and wire protocol a request is."""
    lower = {k.lower(): v for k, v in headers.items()}
    scope = _SCOPE.search(lower.get("authorization", ""))
    service = scope.group(1) if scope else "?"
    bare = urlsplit(path).path
    if "x-amz-target" in lower:
        protocol, operation = "json", lower["x-amz-target"].rsplit(".", 1)[-1]
    elif lower.get("smithy-protocol") == "rpc-v2-cbor":
        protocol, operation = "cbor", bare.rsplit("/", 1)[-1]
    elif bare.startswith("/2015-03-31/"):
        protocol, operation = "rest-json", _lambda_operation(method, bare)
    elif "x-www-form-urlencoded" in lower.get("content-type", ""):
        form = parse_qs(body.decode(errors="replace"))
        protocol, operation = "query", form.get("Action", ["?"])[0]
    else:
        protocol, operation = "rest", f"{method} {bare}"
    return Call(service, operation, protocol, method, path, headers, body)


# --- AWS error shapes ------------------------------------------------------------------------


def _cbor_text(text: str) -> bytes:
    data = text.encode()
    if len(data) < 24:
        return bytes([0x60 + len(data)]) + data
    if len(data) < 256:
        return bytes([0x78, len(data)]) + data
    return bytes([0x79]) + len(data).to_bytes(2, "big") + data


def cbor_map(fields: dict[str, str]) -> bytes:
    """A CBOR map of text to text (all an RPC v2 error body needs)."""
    out = bytes([0xA0 + len(fields)])
    for key, value in fields.items():
        out += _cbor_text(key) + _cbor_text(value)
    return out


def error_response(call: Call, fault: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a throttling or 503 answer in the call's protocol."""
    request_id = str(uuid.uuid4())
    throttled = fault == "throttle"
    message = "Rate exceeded" if throttled else "Service Unavailable"
    if call.protocol == "query":
        code = "Throttling" if throttled else "ServiceUnavailable"
        kind = "Sender" if throttled else "Receiver"
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message>"
            f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        return (400 if throttled else 503), {"Content-Type": "text/xml"}, body
    if call.protocol == "rest-json":  # Lambda: 429 TooManyRequestsException
        code = "TooManyRequestsException" if throttled else "ServiceException"
        headers = {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazonaws.awslambda/",
            "x-amzn-RequestId": request_id,
        }
        body = json.dumps({"Type": "User" if throttled else "Service", "message": message})
        return (429 if throttled else 503), headers, body.encode()
    code = "ThrottlingException" if throttled else "ServiceUnavailableException"
    if call.protocol == "cbor":
        headers = {
            "Content-Type": "application/cbor",
            "smithy-protocol": "rpc-v2-cbor",
            "x-amzn-RequestId": request_id,
            # CloudWatch is query-compatible: it names the query error code too.
            "x-amzn-query-error": "Throttling;Sender"
            if throttled
            else "ServiceUnavailable;Receiver",
        }
        return (400 if throttled else 503), headers, cbor_map({"__type": code, "message": message})
    headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": request_id}
    body = json.dumps({"__type": code, "message": message}).encode()
    return (400 if throttled else 503), headers, body


def aws_error(call: Call, code: str, message: str, status: int = 400) -> Answer:
    """An AWS error answer (``AccessDeniedException``...) in a JSON or REST-JSON call's shape."""
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if call.protocol == "rest-json":
        headers |= {"Content-Type": "application/json", "x-amzn-ErrorType": code}
        return status, headers, json.dumps({"message": message}).encode()
    headers["Content-Type"] = "application/x-amz-json-1.1"
    return status, headers, json.dumps({"__type": code, "message": message}).encode()


# --- holds, faults and rewrites ----------------------------------------------------------------

# An HTTP answer: status, headers, body.
Answer = tuple[int, dict[str, str], bytes]
# Turns moto's answer to a call into the one the worker gets.
Rewriter = Callable[[Call, Answer], Answer]


class Hold:
    """The first call matching ``match`` waits here until the test forwards or drops it."""

    def __init__(self, name: str, match: Callable[[Call], bool]):
        self.name = name
        self.match = match
        self.call: Call | None = None
        self.arrived = threading.Event()
        self._decided = threading.Event()
        self._forward = False

    def forward(self) -> None:
        """Send the held call on to moto (its answer goes to whoever still listens)."""
        self._forward = True
        self._decided.set()

    def drop(self) -> None:
        """Close the held call's connection without forwarding it."""
        self._forward = False
        self._decided.set()

    def wait_decision(self) -> bool:
        self._decided.wait()
        return self._forward


@dataclass
class Faults:
    """Answer a seeded share of calls with throttling and 503 instead of forwarding them.

    The shares are exact per block of ``BLOCK`` calls (in seeded order within each block),
    not a coin toss per call: a scenario of few calls still meets both kinds of fault.
    """

    BLOCK = 20

    throttle: float
    unavailable: float
    seed: int
    only: Callable[[Call], bool] = lambda call: True
    _random: random.Random = field(init=False)
    _deck: list[str | None] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def pick(self, call: Call) -> str | None:
        if not self.only(call):
            return None
        if not self._deck:
            throttles = round(self.BLOCK * self.throttle)
            unavailable = round(self.BLOCK * self.unavailable)
            self._deck = ["throttle"] * throttles + ["503"] * unavailable
            self._deck += [None] * (self.BLOCK - len(self._deck))
            self._random.shuffle(self._deck)
        return self._deck.pop()


@dataclass
class Write:
    """A write moto accepted: the resource and the state it set."""

    resource: str
    state: str
    operation: str


class AwsProxy:
    """The proxy; ``endpoint`` is what the worker's ``RELMAN_AWS_ENDPOINT_URL`` names."""

    def __init__(self, upstream_port: int, port: int = 0):
        self.upstream_port = upstream_port
        self.port = port
        self.writes: list[Write] = []
        self.calls: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.faults: Faults | None = None
        self._holds: list[Hold] = []
        self._rewrites: list[tuple[Callable[[Call], bool], Rewriter]] = []
        self.rewritten: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def up(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again, on the same port after ``stop``)."""
        proxy = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def process_request(self, request: Any, client_address: Any) -> None:
                with proxy._lock:
                    proxy._connections.add(request)
                super().process_request(request, client_address)

            def shutdown_request(self, request: Any) -> None:
                with proxy._lock:
                    proxy._connections.discard(request)
                super().shutdown_request(request)

        server = Server((LOOPBACK, self.port), _Handler)
        server.proxy = self  # type: ignore[attr-defined]
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, name="aws-proxy", daemon=True).start()

    def stop(self) -> None:
        """Stop listening and cut every open connection: the endpoint is down."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
            holds = [h for h in self._holds if h.arrived.is_set()]
        for hold in holds:
            hold.drop()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def hold(self, name: str, match: Callable[[Call], bool]) -> Hold:
        """Hold the first call that ``match`` accepts (one-shot). The preflight's reads are
        never held: kill points are in the activities that snapshot, check and change."""
        hold = Hold(name, match)
        with self._lock:
            self._holds.append(hold)
        return hold

    def rewrite(self, match: Callable[[Call], bool], change: Rewriter) -> None:
        """Answer every call ``match`` accepts with ``change`` of moto's answer (the call
        still reaches moto). The first matching rewrite applies."""
        with self._lock:
            self._rewrites.append((match, change))

    def writes_to(self, resource_prefix: str) -> list[Write]:
        return [w for w in self.writes if w.resource.startswith(resource_prefix)]

    # --- called from handler threads ---------------------------------------------------------

    def _take_hold(self, call: Call) -> Hold | None:
        with self._lock:
            for hold in self._holds:
                if not hold.arrived.is_set() and not call.is_preflight and hold.match(call):
                    hold.call = call
                    hold.arrived.set()
                    return hold
        return None

    def _rewritten(self, call: Call, answer: Answer) -> Answer:
        with self._lock:
            change = next((c for m, c in self._rewrites if m(call)), None)
            if change is not None:
                self.rewritten[f"{call.service}:{call.operation}"] += 1
        return answer if change is None else change(call, answer)

    def _fault(self, call: Call) -> str | None:
        with self._lock:
            fault = self.faults.pick(call) if self.faults else None
            if fault:
                self.faults_injected[f"{fault} {call.service}:{call.operation}"] += 1
            return fault

    def _forwarded(self, call: Call, status: int) -> None:
        with self._lock:
            self.calls[f"{call.service}:{call.operation}"] += 1
            state = call.write_state() if call.is_write and status < 300 else None
            if state:
                self.writes.append(Write(state[0], state[1], call.operation))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        proxy: AwsProxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = dict(self.headers.items())
        call = classify(self.command, self.path, headers, body)
        hold = proxy._take_hold(call)
        if hold is not None and not hold.wait_decision():
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        fault = proxy._fault(call)
        if fault:
            self._answer(*error_response(call, fault))
            return
        upstream = http.client.HTTPConnection(LOOPBACK, proxy.upstream_port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            answer = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
            status = response.status
        finally:
            upstream.close()
        proxy._forwarded(call, status)
        status, headers, data = proxy._rewritten(call, (status, dict(answer), data))
        # The caller may be gone (a killed worker): the write above has landed regardless.
        with contextlib.suppress(OSError):
            self._answer(status, headers, data)

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle
