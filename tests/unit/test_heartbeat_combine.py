"""The flow's heartbeat in a cluster, combined from its members' own."""

from __future__ import annotations

from flows.app.health import FeedState, FlowCounters, FlowHeartbeat, combine


def _member(state: str, trades: int, started: int, feeds: int) -> FlowHeartbeat:
    return FlowHeartbeat.decode({
        "ts_ms": "1", "state": state, "started_ms": str(started), "trades_read": str(trades),
        "trades_backfilled": "1", "duplicates": "2", "klines_closed": f'{{"1m": {trades // 10}}}',
        "feeds": "[" + ",".join(f'{{"connection": {i}, "state": "connected"}}'
                                for i in range(feeds)) + "]",
    })  # fmt: skip


def test_every_member_heard_and_running_makes_a_running_flow_with_summed_counters() -> None:
    beat = combine([_member("running", 100, 5, 1), _member("running", 50, 3, 2)], 1000)
    assert beat.state == "running"
    assert (beat.processes, beat.processes_seen) == (2, 2)
    assert beat.processes_missing == beat.processes_stopped == ()
    assert beat.counters == FlowCounters(trades_read=150, trades_backfilled=2, duplicates=4)
    assert beat.started_ms == 3 and beat.ts_ms == 1000
    assert beat.klines_closed == {"1m": 15}
    assert beat.feeds == (
        FeedState("0/0", "connected", process=0),
        FeedState("1/0", "connected", process=1),
        FeedState("1/1", "connected", process=1),
    )
    assert FlowHeartbeat.decode(beat.encode()) == beat  # what readers get back from Redis


def test_a_missing_or_stopped_member_makes_the_flow_degraded_and_is_named() -> None:
    missing = combine([_member("running", 1, 1, 1), None], 9)
    assert missing.state == "degraded" and missing.processes_missing == (1,)
    stopped = combine([_member("running", 1, 1, 1), _member("stopped", 1, 1, 1)], 9)
    assert stopped.state == "degraded" and stopped.processes_stopped == (1,)
    both = combine([_member("stopped", 1, 1, 1), _member("stopped", 1, 1, 1)], 9)
    assert both.state == "stopped"
    gone = combine([None, None], 9)
    assert gone.state == "stopped" and gone.processes_seen == 0
    assert gone.processes_missing == (0, 1)
