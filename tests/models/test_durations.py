"""Durations as release managers write them (``30m``, ``48h``, ``2d``) and back."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from models.durations import Duration, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("48h", timedelta(hours=48)),
        ("2d", timedelta(days=2)),
        ("45s", timedelta(seconds=45)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        ("0m", timedelta(0)),
    ],
)
def test_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "spelling"),
    [
        (timedelta(minutes=30), "30m"),
        (timedelta(hours=48), "2d"),
        (timedelta(minutes=90), "1h30m"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(0), "0s"),
    ],
)
def test_format_is_the_shortest_spelling(value: timedelta, spelling: str) -> None:
    assert format_duration(value) == spelling


@pytest.mark.parametrize("text", ["30m", "2d", "1h30m", "1d2h3m4s", "0s", "45s", "365d"])
def test_canonical_spellings_round_trip(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    "value",
    [timedelta(0), timedelta(seconds=59), timedelta(hours=36), timedelta(days=400, minutes=1)],
)
def test_whole_second_durations_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


def test_timedelta_passes_through() -> None:
    assert parse_duration(timedelta(hours=2)) == timedelta(hours=2)


@pytest.mark.parametrize(
    "value",
    [
        "5x",
        "",
        " ",
        "10",
        "-5m",
        "-1h",
        "1.5h",
        "h",
        "30m1h",
        "1h 30m",
        "2 days",
        10,
        1.5,
        True,
        None,
    ],
)
def test_rejects(value: Any) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)

    assert str(caught.value) == (f"invalid duration {value!r} (write it like 30s, 30m, 48h or 2d)")


def test_rejects_a_duration_too_long_for_a_timedelta() -> None:
    with pytest.raises(ValueError, match=r"^duration '9999999999d' is too long$"):
        parse_duration("9999999999d")


class _Timed(BaseModel):
    bake: Duration


def test_pydantic_field_reads_and_writes_the_spelling() -> None:
    model = _Timed.model_validate({"bake": "1h30m"})

    assert model.bake == timedelta(minutes=90)
    assert model.model_dump(mode="json") == {"bake": "1h30m"}
    assert _Timed.model_validate_json(model.model_dump_json()) == model


def test_pydantic_field_error_says_how_to_write_it() -> None:
    with pytest.raises(ValidationError) as caught:
        _Timed.model_validate({"bake": "5x"})

    assert "invalid duration '5x' (write it like 30s, 30m, 48h or 2d)" in str(caught.value)
