"""Loading plans from YAML: good plans load, and every bad plan names its file and field.

The malformed corpus lives in ``malformed/*.yaml``. Each file opens with one or more
``# expect: <field path>: <message>`` lines: together they are exactly the lines of the
error, each after ``<file>: ``, so a new or reworded problem shows up here.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from models.loader import PlanError, load_plan, load_plan_text
from models.plan import ReleasePlan

HERE = Path(__file__).parent
REPO = HERE.parents[1]
MALFORMED = sorted((HERE / "malformed").glob("*.yaml"))
GOOD = sorted(REPO.glob("examples/*.yaml")) + sorted((HERE / "good").glob("*.yaml"))

EXPECT = "# expect: "


def expected_lines(path: Path) -> list[str]:
    """The ``# expect:`` lines a malformed file opens with."""
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = []
    for line in lines:
        if not line.startswith(EXPECT):
            break
        expected.append(line.removeprefix(EXPECT))
    return expected


def plan_error(path: Path) -> PlanError:
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    return caught.value


def test_the_malformed_corpus_is_large_and_every_file_says_what_it_expects() -> None:
    assert len(MALFORMED) >= 25
    assert [p.name for p in MALFORMED if not expected_lines(p)] == []


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.stem)
def test_malformed_plan_is_refused_naming_file_and_field(path: Path) -> None:
    expected = expected_lines(path)
    message = str(plan_error(path))

    assert f"{path}: {expected[0]}" in message
    assert message.splitlines() == [f"{path}: {line}" for line in expected]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_good_plan_loads(path: Path) -> None:
    plan = load_plan(path)

    assert isinstance(plan, ReleasePlan)
    assert plan.waves and plan.targets


def test_demo_example_is_read_as_written() -> None:
    plan = load_plan(REPO / "examples" / "demo.yaml")

    assert plan.id == "payments-2.4.0"
    assert plan.version == "2.4.0"
    assert [w.name for w in plan.waves] == ["finance", "operations"]
    assert plan.wave("operations").after == ["finance"]
    assert plan.target("finance-api-version").resource == (
        "ssm parameter /payments/finance/api/version"
    )


MINIMAL = """\
id: web-1.0.0
application: web
version: "1.0.0"
requested_by: alice
targets:
  - {name: web-version, kind: ssm_parameter, parameter: /web/version, value: "1.0.0"}
waves:
  - name: prod
    department: ops
    targets: [web-version]
"""


def with_window(window_yaml: str) -> str:
    """``MINIMAL`` whose only wave has the given window (YAML indented under ``window:``)."""
    indented = "".join(f"      {line}\n" for line in window_yaml.splitlines())
    return MINIMAL + "    window:\n" + indented


def test_unquoted_clock_times_load_as_times_not_base_60_numbers() -> None:
    # Plain YAML 1.1 reads 17:00 as 17 * 60 = 1020 and 2026-03-01 as a date object.
    plan = load_plan_text(
        with_window(
            "timezone: Europe/Berlin\nstart: 17:00\nend: 06:30\n"
            "from_date: 2026-03-01\nuntil_date: 2026-03-31"
        )
    )
    window = plan.waves[0].window

    assert window is not None
    assert (window.start, window.end) == (time(17, 0), time(6, 30))
    assert (window.from_date, window.until_date) == (date(2026, 3, 1), date(2026, 3, 31))


@pytest.mark.parametrize(
    ("days", "expanded"),
    [
        ("mon-fri", ["mon", "tue", "wed", "thu", "fri"]),
        ("fri-mon", ["fri", "sat", "sun", "mon"]),
        ("sat-sun", ["sat", "sun"]),
        ("wed-wed", ["wed"]),
        ("wed", ["wed"]),
        ("[tue, thu]", ["tue", "thu"]),
    ],
)
def test_window_days_expand_ranges_across_the_week_end(days: str, expanded: list[str]) -> None:
    plan = load_plan_text(with_window(f"timezone: UTC\ndays: {days}\nstart: 09:00\nend: 17:00"))

    assert plan.waves[0].window is not None
    assert plan.waves[0].window.days == expanded


def test_window_without_days_is_open_every_day() -> None:
    plan = load_plan_text(with_window("timezone: UTC\nstart: 22:00\nend: 02:00"))

    assert plan.waves[0].window is not None
    assert plan.waves[0].window.days == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def test_missing_file_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"

    assert str(plan_error(path)).startswith(f"{path}: cannot read plan: ")


def test_file_that_is_not_utf8_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("alice", "josé").encode("latin-1"))

    assert str(plan_error(path)).startswith(f"{path}: cannot read plan: not UTF-8 text")


def test_control_character_is_reported_on_one_line_with_its_position() -> None:
    with pytest.raises(PlanError) as caught:
        load_plan_text(MINIMAL.replace("alice", "ali\x07ce"), "bell.yaml")

    assert str(caught.value) == (
        "bell.yaml: invalid YAML: line 4, column 18: character #x0007 is not allowed"
    )


def test_every_problem_is_listed_one_per_line() -> None:
    text = MINIMAL.replace("[web-version]", "[web-version, nope]\n    traffic: [10, 5]")

    with pytest.raises(PlanError) as caught:
        load_plan_text(text, "two.yaml")

    assert str(caught.value).splitlines() == [
        "two.yaml: waves[0].targets[1]: unknown target 'nope'",
        "two.yaml: waves[0].traffic[1]: traffic steps must strictly increase (5 after 10)",
        "two.yaml: waves[0].traffic: the last traffic step must be 100",
    ]
    assert [p.path for p in caught.value.problems] == [
        "waves[0].targets[1]",
        "waves[0].traffic[1]",
        "waves[0].traffic",
    ]


def test_yaml_anchors_and_merge_keys_may_share_a_window() -> None:
    plan = load_plan(HERE / "good" / "shared-window.yaml")
    windows = {w.name: w.window for w in plan.waves}

    assert windows["eu"] is not None and windows["us"] is not None
    assert windows["eu"].timezone == "Europe/Berlin"
    assert windows["us"].timezone == "America/New_York"
    assert (windows["us"].start, windows["us"].days) == (time(9, 0), ["mon", "tue", "wed", "thu"])


def test_python_tags_are_refused_by_the_safe_loader() -> None:
    text = MINIMAL.replace('"1.0.0"\nrequested', "!!python/object/apply:os.getcwd []\nrequested")

    with pytest.raises(PlanError) as caught:
        load_plan_text(text, "evil.yaml")

    assert str(caught.value).startswith("evil.yaml: invalid YAML: line 3, column 10: ")
    assert "could not determine a constructor" in str(caught.value)
