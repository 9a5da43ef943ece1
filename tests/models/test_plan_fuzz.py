"""The plan loader fed generated documents: never an unhandled exception, always either a
plan (that the CLI can submit) or a PlanError naming the file.

Three kinds of documents, 1,100 in all: a real plan with its text mutated (characters,
YAML tokens, anchors, tags and indentation inserted, lines dropped or repeated); a real plan
with values at random paths replaced by generated values of any type, dumped as YAML; and
arbitrary text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.loader import PlanError, _PlanLoader, load_plan_text
from models.messages import ReleaseInput
from models.plan import ReleasePlan

HERE = Path(__file__).parent
VALID = (HERE / "good" / "every-kind.yaml").read_text(encoding="utf-8")
# Read as the loader reads it (clock times and dates stay text), to be dumped again.
VALID_DATA = yaml.load(VALID, Loader=_PlanLoader)  # noqa: S506 - a SafeLoader
SOURCE = "fuzz.yaml"
FUZZ: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

# Pieces of YAML and of plan values that reach the loader's and the model's corners.
TOKENS = [
    ": ", "- ", "-", ":", "[", "]", "{", "}", ",", "'", '"', "#", "&a ", "*a", "<<: *a", "? ",
    "!!int ", "!!bool ", "!!timestamp ", "!!binary ", "!!map ", "!!python/object ", "!Ref ",
    "|", ">", "\t", "\n", "  ", "~", "null", "true", "0x1F", "1e999", ".nan", "-.inf", "0o17",
    "12:30", "25:61", "2d", "-1h", "99999999999999999999d", "mon-fri", "sun-sat", "Mars/Olympus",
    "Europe/Berlin", "2026-02-30", "2026-12-20T00:00:00", "\\u0000", "\"\\ud800\"", "%YAML 1.2",
    "---", "...", "\ufeff", "é", "\U0001f680", "\x85", "\u2028",
]  # fmt: skip
FIELDS = [
    "id", "application", "version", "requested_by", "targets", "waves", "name", "kind", "after",
    "approval", "groups", "timeout", "on_timeout", "escalate_to", "window", "timezone", "days",
    "start", "end", "from_date", "until_date", "traffic", "bake", "alarms", "bake_interval",
    "on_failure", "on_window_close", "freezes", "reason", "departments", "region", "role_arn",
    "parameter", "value", "type", "function", "alias", "listener_arn", "desired_count",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.sampled_from(TOKENS + FIELDS + ["ssm_parameter", "lambda_alias", "elbv2_weights", "100"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), children, max_size=4),
    ),
    max_leaves=12,
)


def load_or_refuse(text: str) -> ReleasePlan | None:
    """The property: a plan the CLI could submit, or a PlanError naming the file."""
    try:
        plan = load_plan_text(text, SOURCE)
    except PlanError as exc:
        assert str(exc).startswith(f"{SOURCE}: ")
        assert exc.problems and all(str(p) for p in exc.problems)
        return None
    assert isinstance(plan, ReleasePlan)
    ReleaseInput(plan=plan).model_dump_json()  # what `relman submit` sends to Temporal
    return plan


def test_the_unmutated_documents_load() -> None:
    assert load_or_refuse(VALID) is not None
    assert load_or_refuse(yaml.safe_dump(VALID_DATA)) is not None


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    text = VALID
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "repeat line", "drop line", "indent"]))
        if action == "insert":
            piece = draw(st.sampled_from(TOKENS) | st.text(max_size=8))
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 40)) :]
        else:
            lines = text.splitlines(keepends=True)
            i = draw(st.integers(0, len(lines) - 1))
            if action == "repeat line":
                lines.insert(i, lines[i])
            elif action == "drop line":
                del lines[i]
            else:
                lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
            text = "".join(lines)
    return text


@st.composite
def plan_with_generated_values(draw: st.DrawFn) -> str:
    data: Any = yaml.safe_load(yaml.safe_dump(VALID_DATA))
    for _ in range(draw(st.integers(1, 4))):
        node = data
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node, key=str) if isinstance(node, dict) else
                                       range(len(node))))  # fmt: skip
            child = node[key]
            if not isinstance(child, dict | list) or not child:
                break
            node = child
        if isinstance(node, dict) and node:
            key = draw(st.sampled_from(sorted(node, key=str)))
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(VALUES)
            elif action == "delete":
                del node[key]
            else:
                node[draw(st.sampled_from(FIELDS))] = draw(VALUES)
        elif isinstance(node, list) and node:
            node[draw(st.integers(0, len(node) - 1))] = draw(VALUES)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@settings(max_examples=500, **FUZZ)
@given(mutated_text())
def test_mutated_plan_text_loads_or_is_refused(text: str) -> None:
    load_or_refuse(text)


@settings(max_examples=400, **FUZZ)
@given(plan_with_generated_values())
def test_plan_with_generated_values_loads_or_is_refused(text: str) -> None:
    load_or_refuse(text)


@settings(max_examples=200, **FUZZ)
@given(st.text(max_size=300) | st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_arbitrary_text_loads_or_is_refused(text: str) -> None:
    load_or_refuse(text)
