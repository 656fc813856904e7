"""The flow's heartbeat in a cluster, combined from its members' own."""

from __future__ import annotations

import json

from flows.dataflows.heartbeat import combine


def _member(state: str, trades: int, started: int, feeds: int) -> dict[str, str]:
    return {
        "state": state, "started_ms": str(started), "trades_read": str(trades),
        "trades_backfilled": "1", "feed_reconnects": "0", "gaps": "0", "duplicates": "2",
        "late": "0", "foreign_batches": "0", "klines_closed": json.dumps({"1m": trades // 10}),
        "feeds": json.dumps([{"connection": i, "state": "connected"} for i in range(feeds)]),
    }  # fmt: skip


def test_every_member_heard_and_running_makes_a_running_flow_with_summed_counters() -> None:
    beat = combine([_member("running", 100, 5, 1), _member("running", 50, 3, 2)], 1000)
    assert beat["state"] == "running"
    assert (beat["processes"], beat["processes_seen"]) == (2, 2)
    assert beat["trades_read"] == 150 and beat["duplicates"] == 4
    assert beat["started_ms"] == 3 and beat["ts_ms"] == 1000
    assert json.loads(beat["klines_closed"]) == {"1m": 15}
    assert [f["connection"] for f in json.loads(beat["feeds"])] == ["0/0", "1/0", "1/1"]


def test_a_missing_or_stopped_member_makes_the_flow_degraded() -> None:
    assert combine([_member("running", 1, 1, 1), None], 9)["state"] == "degraded"
    assert combine([_member("running", 1, 1, 1), _member("stopped", 1, 1, 1)], 9)["state"] == (
        "degraded"
    )
    assert combine([_member("stopped", 1, 1, 1), _member("stopped", 1, 1, 1)], 9)["state"] == (
        "stopped"
    )
    gone = combine([None, None], 9)
    assert gone["state"] == "stopped" and gone["processes_seen"] == 0
