"""Following a release when stdout is not a terminal (client.follow): one line per event."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from client import follow, service
from client.output import OutputFormat
from common.errors import CliError
from models.status import ReleasePhase, ReleaseStatus, TimelineEvent

AT = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)


def _event(n: int) -> TimelineEvent:
    return TimelineEvent(at=AT, kind="note", message=f"event {n}", wave="apac")


def _status(total: int, shown: int, phase: ReleasePhase = ReleasePhase.DEPLOYING) -> ReleaseStatus:
    events = [_event(n) for n in range(total)][total - shown :]
    return ReleaseStatus(
        release_id="r1", application="a", version="1", requested_by="alice", phase=phase,
        timeline=events, timeline_total=total,
    )  # fmt: skip


def test_each_event_is_printed_once_and_the_end_last(capsys: pytest.CaptureFixture[str]) -> None:
    printer = follow.EventPrinter(OutputFormat.text)
    printer.show(_status(2, 2))
    printer.show(_status(2, 2))  # nothing new
    printer.show(_status(3, 3))
    printer.end(_status(3, 3, ReleasePhase.COMPLETED))
    assert capsys.readouterr().out == (
        "2026-12-05 03:00:00 UTC  note  wave=apac  event 0\n"
        "2026-12-05 03:00:00 UTC  note  wave=apac  event 1\n"
        "2026-12-05 03:00:00 UTC  note  wave=apac  event 2\n"
        "release r1 completed\n"
    )


def test_events_that_scrolled_out_between_polls_are_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = follow.EventPrinter(OutputFormat.json)
    printer.show(_status(1, 1))
    printer.show(_status(10, 2))  # 9 new, only the latest 2 in the answer
    out = capsys.readouterr()
    assert [json.loads(line)["message"] for line in out.out.splitlines()] == [
        "event 0", "event 8", "event 9",
    ]  # fmt: skip
    assert out.err == "7 event(s) came too fast to show: `relman history r1` has them all\n"


def test_following_stops_at_rollback_failed_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def watch(release_id, on_status, interval, tail, on_silence):  # type: ignore[no-untyped-def]
        on_status(_status(1, 1))
        on_status(_status(2, 2, ReleasePhase.ROLLBACK_FAILED))
        raise AssertionError("a pipeline must not wait for an operator")

    monkeypatch.setattr(service, "watch", watch)
    final = follow.follow("r1", OutputFormat.json, 10)
    assert final.phase == ReleasePhase.ROLLBACK_FAILED
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[-1] == {
        "release_id": "r1", "phase": "rollback_failed", "finished": False,
        "finished_at": None, "error": None,
    }  # fmt: skip
    with pytest.raises(CliError) as raised:
        follow.ended_badly(final)
    assert raised.value.exit_code == 1
    assert str(raised.value) == (
        "release r1 stopped rollback_failed (it waits for an operator: relman retry or skip-target)"
    )
