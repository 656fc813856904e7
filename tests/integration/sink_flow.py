"""A live flow with an added kline sink (`flows.io.redis_io.RedisKlines` into a namespace of
its own), run as its own process so a test can `kill -9` it:

    python -m tests.integration.sink_flow BASE_URL SYMBOLS REDIS_URL NAMESPACE SINK_NAMESPACE
"""

from __future__ import annotations

import sys

from flows.dataflows.live import LiveJob, run_live
from flows.domain.keys import KeySpace
from flows.io.redis_io import RedisKlines
from tests.integration.test_live import INTERVALS_UNDER_TEST


def main(base: str, symbols: str, redis_url: str, namespace: str, sink_namespace: str) -> None:
    job = LiveJob(
        ws_url=base.replace("http://", "ws://"),
        rest_url=base,
        symbols=tuple(symbols.split(",")),
        redis_url=redis_url,
        intervals=INTERVALS_UNDER_TEST,
        keys=KeySpace(namespace),
        grace_ms=500,
        open_throttle_ms=200,
        sinks=(RedisKlines(redis_url, KeySpace(sink_namespace)),),
    )
    run_live(job)


if __name__ == "__main__":
    main(*sys.argv[1:6])
