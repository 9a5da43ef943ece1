"""Load a release plan from YAML (safe loader only) with errors naming file and field path."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from models.plan import TARGET_KINDS, ReleasePlan
from models.validation import Problem, plan_problems

# Limits that keep a hostile or broken file from hanging `plan check` or the worker: the
# pure-Python YAML parser reads about 0.4 MB/s, and a few lines of anchors and aliases
# ("billion laughs") describe a document of billions of values. Real plans are far below.
MAX_PLAN_BYTES = 1024 * 1024
MAX_NESTING = 50
MAX_VALUES = 200_000
_SURROGATE = re.compile("[\ud800-\udfff]")
M = TypeVar("M", bound=BaseModel)


class DocumentError(Exception):
    """A YAML document that cannot be used; ``problems`` lists each field path and what is
    wrong. Plans raise :class:`PlanError`; the organisation policy its own subclass."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class PlanError(DocumentError):
    """A plan that cannot be used; ``problems`` lists each field path and what is wrong."""


class _PlanLoader(yaml.SafeLoader):
    """YAML 1.1's safe loader minus two surprises for plans and plus duplicate-key errors.

    ``17:00`` would otherwise load as the base-60 integer 1020 and ``2026-12-20`` as a date
    object; plans keep both as strings and pydantic parses them with clear errors.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses per level: refuse deep nesting before Python's stack does.
        if self._depth >= MAX_NESTING:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"nested more than {MAX_NESTING} levels deep", mark
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()  # type: ignore[no-untyped-call]
        if node is not None:
            _check_size(node)
        return node  # type: ignore[no-any-return]

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # Explicit tags reach constructors that fail with plain Python errors
        # (`!!int abc`, `!!bool maybe`, `!!timestamp x`): report them as YAML problems.
        try:
            value = super().construct_object(node, deep=deep)  # type: ignore[no-untyped-call]
        except yaml.YAMLError:
            raise
        except Exception:
            tag = str(node.tag).rsplit(":", 1)[-1]
            if isinstance(node, yaml.ScalarNode):
                text = node.value if len(node.value) <= 40 else node.value[:40] + "..."
                what = repr(text)
            else:
                what = "this " + ("list" if isinstance(node, yaml.SequenceNode) else "mapping")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {what} as {tag}", node.start_mark
            ) from None
        # A "\ud800" escape makes a string no JSON encoder accepts: the release could
        # never be submitted, so refuse it here.
        if isinstance(value, str) and _SURROGATE.search(value):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a \\u escape names a lone UTF-16 surrogate, not a character",
                node.start_mark,
            )
        return value

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)  # reports "expected a mapping"
        seen: set[Any] = set()
        for key_node, _ in node.value:
            # `<<: *anchor` merge keys may repeat and be overridden; flatten_mapping handles them.
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if not isinstance(key, Hashable):
                continue  # the base class reports "found unhashable key" with its position
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_size(root: yaml.Node) -> None:
    """Refuse a document of more than ``MAX_VALUES`` nodes once aliases are expanded.

    Sizes are counted per distinct node (an alias is the node it names), so the count costs
    time in the nodes written, not in the nodes they expand to.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        if children_done:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_VALUES:
                problem = (
                    f"the document has more than {MAX_VALUES} values"
                    if len(sizes) > MAX_VALUES
                    else f"aliases expand the document to more than {MAX_VALUES} values"
                )
                raise yaml.composer.ComposerError(None, None, problem, None)
        elif id(node) not in sizes:
            sizes[id(node)] = 1  # until counted; an alias of an enclosing node counts once
            stack.append((node, True))
            stack.extend((child, False) for child in children)


_PlanLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PlanLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``('waves', 1, 'window', 'timezone')`` -> ``waves[1].window.timezone``.

    The discriminator tag pydantic inserts for target kinds is left out of the path.
    """
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in TARGET_KINDS and i >= 2 and loc[i - 2] == "targets":
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(error: Any) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "union_tag_invalid":
        kinds = ", ".join(TARGET_KINDS)
        return f"unknown target kind {error['input'].get('kind')!r} (one of: {kinds})"
    if kind == "union_tag_not_found":
        return f"a target needs a kind (one of: {', '.join(TARGET_KINDS)})"
    if kind == "string_type" and type(error["input"]) in (int, float):
        # `version: 2.10` reaches us as the float 2.1; say so instead of "not a string".
        return f"YAML read {error['input']!r} as a number; quote it to keep it as text"
    if kind == "string_pattern_mismatch":
        return f"invalid value {error['input']!r} (must match {error['ctx']['pattern']})"
    if kind == "literal_error":
        return f"invalid value {error['input']!r} ({msg[0].lower()}{msg[1:]})"
    return msg[0].lower() + msg[1:]


def problems_from_validation_error(exc: ValidationError) -> list[Problem]:
    """Turn pydantic's errors into plan problems with readable paths and messages."""
    return [Problem(format_loc(e["loc"]), _message(e)) for e in exc.errors()]


def parse_plan(data: Any, source: str = "<plan>") -> ReleasePlan:
    """Validate already-parsed plan data: field types first, then cross-field rules."""
    if not isinstance(data, dict):
        raise PlanError(source, [Problem("", "a plan must be a YAML mapping of fields")])
    return validate_document(data, source, ReleasePlan, plan_problems, PlanError)


def validate_document(
    data: dict[str, Any],
    source: str,
    model: type[M],
    cross_field_problems: Callable[[M], list[Problem]],
    error: type[DocumentError],
) -> M:
    """``data`` as ``model``: field types first, then ``cross_field_problems``; the
    problems of the first stage that finds any are raised as ``error``."""
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        raise error(source, problems_from_validation_error(exc)) from None
    problems = cross_field_problems(document)
    if problems:
        raise error(source, problems)
    return document


def load_plan_text(text: str, source: str = "<plan>") -> ReleasePlan:
    """Parse and validate YAML plan text."""
    return parse_plan(load_yaml_text(text, source), source)


def load_yaml_text(
    text: str, source: str, noun: str = "plan", error: type[DocumentError] = PlanError
) -> Any:
    """YAML text as data, with the plan's limits and safe loader; ``error`` names the problem.

    ``noun`` is what the document is, as the messages say it ("cannot read policy: ...").
    """
    if len(text) > MAX_PLAN_BYTES:
        raise error(source, [_too_large(len(text.encode("utf-8", "surrogatepass")), noun)])
    try:
        return yaml.load(text, Loader=_PlanLoader)  # noqa: S506 - _PlanLoader is a SafeLoader
    except yaml.YAMLError as exc:
        problem = Problem("", f"invalid YAML: {_yaml_problem(exc, text)}")
        raise error(source, [problem]) from None


def _too_large(size: int | None, noun: str) -> Problem:
    limit = f"{MAX_PLAN_BYTES // (1024 * 1024)} MiB"
    if size is None:  # a device or a pipe: it has no size to tell
        return Problem("", f"cannot read {noun}: it is larger than the {limit} a {noun} may be")
    shown = f"{size / (1024 * 1024):.1f} MiB"
    return Problem("", f"cannot read {noun}: it is {shown}, more than the {limit} a {noun} may be")


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line saying where and what, without PyYAML's multi-line ``in "<unicode string>"``."""
    if isinstance(exc, yaml.reader.ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        return f"line {line}, column {column}: character #x{exc.character:04x} is not allowed"
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):  # "expected a single document ... but found ..."
        problem = f"{context}, {problem}"
    return f"{where}{problem}"


def load_plan(path: str | Path) -> ReleasePlan:
    """Read, parse and validate the plan file at ``path``."""
    return load_plan_text(read_text_file(path), str(path))


def read_text_file(
    path: str | Path, noun: str = "plan", error: type[DocumentError] = PlanError
) -> str:
    """The UTF-8 text of the file at ``path``, refused unread when larger than a plan may be."""
    source = str(path)
    try:
        # Read at most one byte past the limit: a huge file (or /dev/zero) is refused unread.
        with open(path, "rb") as stream:
            raw = stream.read(MAX_PLAN_BYTES + 1)
            info = os.fstat(stream.fileno())
            size = info.st_size if stat.S_ISREG(info.st_mode) else None
        if len(raw) > MAX_PLAN_BYTES:
            raise error(source, [_too_large(size, noun)])
        return raw.decode("utf-8")
    except OSError as exc:
        raise error(source, [Problem("", f"cannot read {noun}: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        problem = Problem("", f"cannot read {noun}: not UTF-8 text (byte {exc.start})")
        raise error(source, [problem]) from None
