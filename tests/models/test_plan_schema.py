"""The plan's JSON Schema (for editors) and its JSON round trip (how the workflow gets it)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from models.durations import DURATION_PATTERN
from models.loader import load_plan
from models.plan import ReleasePlan
from models.validation import plan_problems

HERE = Path(__file__).parent
PLANS = sorted(HERE.parents[1].glob("examples/*.yaml")) + sorted((HERE / "good").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return ReleasePlan.model_json_schema()


def field(schema: dict[str, Any], model: str, name: str) -> dict[str, Any]:
    return schema["$defs"][model]["properties"][name]


def test_schema_is_plain_json(schema: dict[str, Any]) -> None:
    assert json.loads(json.dumps(schema)) == schema
    assert schema["type"] == "object"
    assert set(schema["required"]) >= {"id", "application", "version", "requested_by"}
    assert schema["additionalProperties"] is False


def test_schema_documents_durations_as_strings(schema: dict[str, Any]) -> None:
    bake = field(schema, "Wave", "bake")
    timeout = field(schema, "Approval", "timeout")

    assert bake["type"] == "string"
    assert bake["pattern"] == DURATION_PATTERN
    assert {"type": "string", "pattern": DURATION_PATTERN} in [
        {k: v for k, v in option.items() if k in ("type", "pattern")} for option in timeout["anyOf"]
    ]
    assert re.match(DURATION_PATTERN, "1h30m") and re.match(DURATION_PATTERN, "2d")
    assert not re.match(DURATION_PATTERN, "5x")


def test_schema_documents_local_times_and_time_zones_as_strings(schema: dict[str, Any]) -> None:
    start = field(schema, "Window", "start")

    assert start["type"] == "string"
    assert re.match(start["pattern"], "17:00") and not re.match(start["pattern"], "25:00")
    assert field(schema, "Window", "timezone")["type"] == "string"


def test_schema_lists_every_target_kind(schema: dict[str, Any]) -> None:
    kinds = {
        definition["properties"]["kind"]["const"]
        for name, definition in schema["$defs"].items()
        # Checks and job steps have kinds of their own.
        if "kind" in definition.get("properties", {}) and name.endswith("Target")
    }

    assert kinds == {
        "ssm_parameter",
        "lambda_alias",
        "elbv2_weights",
        "route53_weighted",
        "ecs_service",
        "s3_artifact",
        "ec2_fleet",
    }


@pytest.mark.parametrize("path", PLANS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_good_plans_satisfy_the_schema(schema: dict[str, Any], path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)

    jsonschema.validate(load_plan(path).model_dump(mode="json"), schema)


@pytest.mark.parametrize("path", PLANS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_plan_round_trips_through_json_unchanged(path: Path) -> None:
    plan = load_plan(path)

    again = ReleasePlan.model_validate_json(plan.model_dump_json())

    assert again == plan
    assert again.model_dump_json() == plan.model_dump_json()
    assert plan_problems(again) == []


def test_json_keeps_the_plan_spellings() -> None:
    plan = load_plan(HERE / "good" / "every-kind.yaml")

    data = json.loads(plan.model_dump_json())
    eu, us = data["waves"][1], data["waves"][2]

    assert (eu["bake"], eu["approval"]["timeout"]) == ("30m", "1d12h")
    assert (us["bake"], us["approval"]["timeout"]) == ("1h30m", None)
    assert (eu["window"]["start"], eu["window"]["end"]) == ("22:00", "02:00")
    assert us["window"]["from_date"] == "2026-06-01"
    assert data["freezes"][0]["start"] == "2026-12-20T00:00:00+01:00"
    assert [t["kind"] for t in data["targets"]][:3] == [
        "ssm_parameter",
        "s3_artifact",
        "lambda_alias",
    ]
