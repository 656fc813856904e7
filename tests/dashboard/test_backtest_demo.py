"""The demo records the market it plays, so the Backtest page has recordings at once: after a
short demo (the simulator, the live flow and the recorder, real Redis and PostgreSQL) the page
lists the demo's recordings, a backtest over them gives the signals a direct backtest gives,
and the klines built from the recordings are the klines the live flow stored."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from rich.console import Console

from dashboard.data import backtests
from dashboard.data.users import add_user
from flows.app.backtests import rebuilt_series, stored_series
from flows.backtest.run import run_backtest
from flows.dataflows.demo import DemoJob, run_demo
from flows.dataflows.demo_recording import DEMO_FOLDER, HISTORY_NAME
from flows.domain.keys import KeySpace
from flows.signals.book import Book, TraderRow, compile_trader
from tests.dashboard.conftest import PASSWORD, no_exceptions, open_page
from tests.dashboard.test_backtest_page import run_to_the_end, type_rule

RULE = "close > open"


@pytest.mark.timeout(600)
def test_the_demo_records_what_it_plays_and_the_page_backtests_it(
    redis_url: str,
    keys: KeySpace,
    signals_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    app_env: None,
) -> None:
    folder = tmp_path / "recordings"
    job = DemoJob(redis_url=redis_url, keys=keys, intervals=("1m",), symbols=3, seed=11,
                  history_ms=3_600_000, rate=20.0, duration_s=4.0, port=0,
                  recordings_dir=folder)  # fmt: skip
    with open("/dev/null", "w") as quiet:
        stats = run_demo(job, Console(file=quiet))
    assert stats.trades_read > 0

    # one folder for this start: the history, and the stream the recorder wrote
    (start,) = (folder / DEMO_FOLDER).iterdir()
    history = start / HISTORY_NAME
    streamed = sorted(start.glob("klineflow-*.jsonl.gz"))
    assert history.is_file() and streamed
    assert not list(start.glob("*.part"))
    files = [history, *streamed]  # name order, the order the page reads them in

    # the recordings are the market the live flow built its klines from
    client = redis.Redis.from_url(redis_url)
    symbols = sorted(m.decode() for m in client.smembers(keys.symbols))  # type: ignore[union-attr]
    client.close()
    assert len(symbols) == 3
    for symbol in symbols:
        live = stored_series(redis_url, keys, symbol, "1m", 0, 2**62)
        rebuilt = {k.open_ms: k for k in rebuilt_series(files, symbol, "1m", redis_url)}
        assert len(live) >= 50  # an hour of history
        assert [k for k in live if k.open_ms in rebuilt] == [rebuilt[k.open_ms] for k in live
                                                             if k.open_ms in rebuilt]  # fmt: skip
        assert live[0].open_ms in rebuilt and live[-1].open_ms in rebuilt

    # the page lists them; a backtest over them is the backtest of those files
    monkeypatch.setenv(backtests.RECORDINGS_ENV, str(folder))
    ana = add_user(signals_db, "ana", PASSWORD)
    at = open_page("views/backtest.py", ana, "ana")
    names = [str(p.relative_to(folder)) for p in files]
    assert at.multiselect(key="bt_recordings").options == names
    at.multiselect(key="bt_recordings").set_value(list(reversed(names)))  # any pick order
    type_rule(at, RULE, "1m", 0)
    done = run_to_the_end(at).finished
    assert done.rows
    book = Book((compile_trader(TraderRow(0, "typed rule", RULE, "1m", cooldown_bars=0,
                                          trigger_mode="on_change")),), version=1)  # fmt: skip
    direct = run_backtest(files, book, ("1m",), redis_url)
    assert [r.signal.fire.id for r in done.rows] == [s.fire.id for s in direct.signals]
    assert {s for s, _ in direct.klines} == set(symbols)
    no_exceptions(at)
