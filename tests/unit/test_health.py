"""The heartbeat record (what the flow writes into Redis and every reader decodes) and the
one definition of a healthy flow."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.app.health import (
    COUNTER_NAMES,
    FeedState,
    FlowCounters,
    FlowHeartbeat,
    HeartbeatError,
    combine,
)
from flows.domain.stats import RunStats

NOW = 1_704_067_200_000

# what the first flow with a heartbeat wrote (dd9b413): no waiting_for, no cluster fields,
# none of the later counters, feeds without buffered_frames/backfilling
OLDER_FLOW = {
    b"ts_ms": b"1704067199000", b"started_ms": b"1704067100000", b"state": b"running",
    b"trades_read": b"1234", b"trades_backfilled": b"5", b"feed_reconnects": b"1",
    b"gaps": b"0", b"duplicates": b"7", b"late": b"2", b"klines_closed": b'{"1m": 3}',
    b"feeds": b'[{"connection": 0, "streams": 3, "state": "connected", '
              b'"last_message_age_s": 0.25, "reconnects": 1, "frames": 900}]',
}  # fmt: skip


def _beat(**kw: object) -> FlowHeartbeat:
    base: dict[str, object] = dict(
        ts_ms=NOW - 1_000, started_ms=NOW - 60_000, state="running",
        feeds=(FeedState("0", "connected", streams=3, last_message_age_s=0.4),
               FeedState("1", "connected", streams=3, last_message_age_s=1.5)),
    )  # fmt: skip
    base.update(kw)
    return FlowHeartbeat(**base)  # type: ignore[arg-type]


def test_encode_then_decode_gives_the_record_back() -> None:
    beat = _beat(
        counters=FlowCounters(*range(1, len(COUNTER_NAMES) + 1)),
        waiting_for=("postgresql", "redis"),
        klines_closed={"1m": 12, "1h": 1},
        feeds=(FeedState("0/1", "reconnecting", 200, None, 3, 52_000, 17, 2, process=0),),
        processes=2, processes_seen=1, processes_missing=(1,),
    )  # fmt: skip
    fields = beat.encode()
    assert all(isinstance(v, str) for v in fields.values())
    assert FlowHeartbeat.decode(fields) == beat
    as_redis_gives = {k.encode(): v.encode() for k, v in fields.items()}
    assert FlowHeartbeat.decode(as_redis_gives) == beat


names = st.text(st.characters(codec="utf-8", exclude_characters=","), min_size=1).map(str.strip)


@given(
    ts=st.integers(0, 2**62),
    state=st.sampled_from(["running", "stopped", "degraded"]),
    counters=st.lists(st.integers(0, 2**53), min_size=len(COUNTER_NAMES),
                      max_size=len(COUNTER_NAMES)),
    waiting=st.lists(names.filter(bool), max_size=3),
    feeds=st.lists(st.builds(
        FeedState, connection=st.text(), state=st.text(), streams=st.integers(0, 1024),
        last_message_age_s=st.none() | st.floats(0, 1e9, allow_nan=False),
        reconnects=st.integers(0, 10**9), process=st.none() | st.integers(0, 64)), max_size=4),
    closed=st.dictionaries(st.text(), st.integers(0, 2**40), max_size=4),
)  # fmt: skip
def test_any_heartbeat_survives_the_hash(
    ts: int, state: str, counters: list[int], waiting: list[str], feeds: list[FeedState],
    closed: dict[str, int],
) -> None:  # fmt: skip
    beat = FlowHeartbeat(ts, ts // 2, state, FlowCounters(*counters), tuple(waiting), closed,  # type: ignore[arg-type]
                         tuple(feeds))  # fmt: skip
    assert FlowHeartbeat.decode(beat.encode()) == beat


def test_an_older_flows_hash_reads_with_defaults_for_what_it_lacks() -> None:
    beat = FlowHeartbeat.decode(OLDER_FLOW)
    assert beat.state == "running" and beat.ts_ms == NOW - 1_000
    assert beat.counters.trades_read == 1234 and beat.counters.late == 2
    assert beat.counters.store_repairs == beat.counters.implausible == 0
    assert beat.waiting_for == () and (beat.processes, beat.processes_seen) == (1, 1)
    assert beat.feeds == (
        FeedState("0", "connected", streams=3, last_message_age_s=0.25, reconnects=1,
                  frames=900),
    )  # fmt: skip
    assert beat.health(NOW).healthy
    started_missing = dict(OLDER_FLOW)
    del started_missing[b"started_ms"], started_missing[b"feeds"]
    assert FlowHeartbeat.decode(started_missing).started_ms == NOW - 1_000


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({}, "not a heartbeat: it has no ts_ms and state"),
        ({"state": "running"}, "it has no ts_ms"),
        ({"ts_ms": "12:00", "state": "running"}, "field 'ts_ms': expected an integer, got '12:00'"),
        ({"ts_ms": "1", "state": "asleep"}, "field 'state': expected one of running, stopped"),
        ({"ts_ms": "1", "state": "running", "late": "many"}, "field 'late': expected an integer"),
        ({"ts_ms": "1", "state": "running", "feeds": "[{"}, "field 'feeds': expected JSON"),
        ({"ts_ms": "1", "state": "running", "feeds": "{}"}, "field 'feeds': expected a list"),
        ({"ts_ms": "1", "state": "running", "feeds": "[1]"}, "expected objects with a connection"),
        ({"ts_ms": "1", "state": "running", "feeds": '[{"connection": 0, "state": "x", '
          '"streams": "lots"}]'}, "field 'feeds': a feed of the wrong kind"),
        ({"ts_ms": "1", "state": "running", "klines_closed": "[]"}, "expected an object"),
        ({"ts_ms": "1", "state": "running", "klines_closed": '{"1m": 1.5}'},
         "field 'klines_closed': expected an integer"),
        ({"ts_ms": "1", "state": "running", "processes_missing": "x"}, "process numbers"),
    ],
)  # fmt: skip
def test_garbage_is_a_typed_error_that_names_the_field(fields: dict[str, str], says: str) -> None:
    with pytest.raises(HeartbeatError, match=says.replace("(", r"\(").replace("[", r"\[")):
        FlowHeartbeat.decode(fields)


def test_a_fresh_running_heartbeat_with_every_feed_connected_is_healthy() -> None:
    health = _beat().health(NOW)
    assert health.healthy and health.reasons == ()
    assert _beat(ts_ms=NOW + 500).health(NOW).healthy  # the writer's clock a little ahead


def test_a_stale_heartbeat_says_how_old_it_is() -> None:
    health = _beat(ts_ms=NOW - 42_000).health(NOW)
    assert not health.healthy
    assert health.reasons == (
        "no heartbeat for 42 s (the flow writes one every 2 s): it stopped or hangs",
    )
    assert _beat(ts_ms=NOW - 10_000).health(NOW).healthy  # the bound itself is still fresh
    assert not _beat(ts_ms=NOW - 10_001).health(NOW).healthy


def test_a_stopped_flow_is_not_healthy() -> None:
    stopped = _beat(state="stopped", feeds=(FeedState("0", "disconnected"),))
    assert stopped.health(NOW).reasons == ("the flow stopped",)


def test_a_feed_not_connected_or_silent_is_named() -> None:
    feeds = (
        FeedState("0", "connected", last_message_age_s=31.0),
        FeedState("1", "reconnecting", last_message_age_s=2.0),
        FeedState("2", "connecting"),
        FeedState("3", "connected"),  # connected, nothing heard yet: not a problem yet
    )
    assert _beat(feeds=feeds).health(NOW).reasons == (
        "feed 0 silent for 31 s", "feed 1 reconnecting", "feed 2 connecting",
    )  # fmt: skip
    assert _beat(feeds=feeds[:1]).health(NOW, feed_silent_after_s=40).healthy


def test_waiting_for_a_server_is_not_healthy() -> None:
    assert _beat(waiting_for=("postgresql",)).health(NOW).reasons == (
        "waiting for postgresql (the flow is paused)",
    )
    assert _beat(waiting_for=("redis",)).health(NOW).reasons == (
        "waiting for redis (the flow is paused)",
    )


def test_a_missing_or_stopped_cluster_member_is_named() -> None:
    member = _beat(feeds=(FeedState("0", "connected", last_message_age_s=0.1),))
    missing = combine([member, None, member], NOW)
    assert missing.health(NOW).reasons == ("cluster process 1 of 3 not heard from",)
    stopped = combine([member, _beat(state="stopped")], NOW)
    assert stopped.health(NOW).reasons == ("cluster process 1 of 2 stopped",)
    # an older writer's combined hash: only the counts, no member named
    older = {"ts_ms": str(NOW), "state": "degraded", "processes": "2", "processes_seen": "1"}
    assert FlowHeartbeat.decode(older).health(NOW).reasons == (
        "cluster: 1 of 2 processes heard from",
    )
    assert combine([member, member], NOW).health(NOW).healthy


def test_the_record_of_a_run_carries_its_counters_and_feeds() -> None:
    stats = RunStats()
    stats.trades_read, stats.store_repairs = 10, 2
    stats.dead_letters["late"] += 3
    stats.waiting_for.add("redis")
    stats.klines_closed["1m"] += 4
    feed = {"connection": 0, "streams": 2, "state": "connected", "last_message_age_s": 0.1,
            "reconnects": 0, "frames": 5, "buffered_frames": 1, "backfilling": 0}  # fmt: skip
    beat = FlowHeartbeat.of_run(stats, [feed], NOW, NOW - 5, stopped=False)
    assert beat.counters.trades_read == 10 and beat.counters.late == 3
    assert beat.counters.store_repairs == 2 and beat.waiting_for == ("redis",)
    assert beat.klines_closed == {"1m": 4} and beat.feeds[0].connection == "0"
    assert json.loads(beat.encode()["feeds"])[0]["buffered_frames"] == 1
    assert FlowHeartbeat.of_run(stats, [feed], NOW, NOW, stopped=True).state == "stopped"
