"""`klineflow traders` end to end: a real PostgreSQL (a database of this module's own, left
unmigrated so the commands migrate it themselves, dropped at the end) and a real Redis (klines
written with the flow's own KlineWriter into the test's namespace).

Where a rule fires is checked kline by kline against an independent computation: plain
comparisons of the synthetic klines, and TA-Lib's batch functions over the same closes.
"""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest
import redis
import talib
import typer
from typer.testing import CliRunner, Result

from flows.cli.traders import traders_app
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.domain.money import format_units
from flows.signals.engine import Fire, RuleFailure, signal_id
from flows.signals.store import SignalWriter
from flows.storage.migrations import applied, migration_files
from flows.storage.redis_klines import KlineWriter, RetentionPolicy
from tests.conftest import NewDatabase

runner = CliRunner()
app = typer.Typer()
app.add_typer(traders_app, name="traders")  # mounted as the klineflow command mounts it

U = 100_000_000  # 1e-8 units per coin
MINUTE = 60_000
T0 = 1_700_000_000_000 // 3_600_000 * 3_600_000  # an hour boundary (2023-11-14 22:00 UTC)
FAR_FUTURE_OPEN = 4_102_444_800_000  # 2100-01-01: a kline that cannot have closed yet
WIDE = {"COLUMNS": "250"}  # tables unwrapped, so cells can be read back


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def db(new_database: NewDatabase) -> str:
    """The module's database: empty at first, the first command migrates it."""
    return new_database()


def traders(db: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["traders", *args, "--database-url", db], env=env)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def added_id(result: Result) -> int:
    assert result.exit_code == 0, result.output
    found = re.search(r": id (\d+), version 1", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def listed(db: str) -> dict[int, dict[str, Any]]:
    result = traders(db, "list", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["id"]: row for row in rows}


def caret_column(stderr: str, expression: str) -> int:
    """The column the caret points at, under the printed rule."""
    lines = stderr.splitlines()
    at = lines.index("  " + expression)
    caret = lines[at + 1]
    assert caret.strip() == "^", stderr
    return caret.index("^") - 2


# ------------------------------------------------------------------------------ database


def test_first_command_migrates_a_fresh_database(new_database: NewDatabase) -> None:
    url = new_database()
    assert applied(url) == []
    result = traders(url, "list")
    assert result.exit_code == 0, result.output
    assert "no traders yet" in result.stdout
    assert [name for name, _ in applied(url)] == [m.name for m in migration_files()]
    assert traders(url, "list", "--json").stdout == ""


def test_add_list_show_enable_disable_edit_round_trip(db: str) -> None:
    name = unique("dip")
    result = traders(
        db,
        "add",
        name,
        "rsi(14) < 30",
        "--interval",
        "1m",
        "--symbols",
        "btcusdt, ETHUSDT",
        "--trigger",
        "every_close",
        "--cooldown",
        "5",
        "--description",
        "buy the dip :rocket: [bold]",
    )
    tid = added_id(result)

    row = listed(db)[tid]
    assert row == {
        "id": tid,
        "name": name,
        "expression": "rsi(14) < 30",
        "interval": "1m",
        "version": 1,
        "owner_id": row["owner_id"],
        "description": "buy the dip :rocket: [bold]",
        "symbols_mode": "list",
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "symbols_pattern": None,
        "trigger_mode": "every_close",
        "cooldown_bars": 5,
        "enabled": True,
        "signals": 0,
        "signals_24h": 0,
    }
    with psycopg.connect(db) as conn:
        owner = conn.execute("SELECT name FROM users WHERE id = %s", (row["owner_id"],))
        assert owner.fetchone() == ("local",)

    table = traders(db, "list", env=WIDE)
    assert table.exit_code == 0, table.output
    line = next(x for x in table.stdout.splitlines() if name in x)
    cells = re.split(r"\s{2,}", line.strip())  # columns are set apart by spaces
    assert cells == [
        str(tid), name, "1m", "BTCUSDT,ETHUSDT", "every_close", "5", "yes", "1", "0", "0",
        "rsi(14) < 30",
    ]  # fmt: skip

    # a narrow terminal: the rules below the table, whole
    narrow = traders(db, "list", env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert f"{tid:>4}  rsi(14) < 30" in narrow.stdout.splitlines()
    assert max(len(x) for x in narrow.stdout.splitlines()) <= 80

    shown = traders(db, "show", name)
    assert shown.exit_code == 0, shown.output
    for expected in (
        f"id:           {tid}",
        f"name:         {name}",
        "description:  buy the dip :rocket: [bold]",  # verbatim, no emoji nor markup
        "expression:   rsi(14) < 30",
        "symbols:      BTCUSDT,ETHUSDT",
        "trigger:      every_close",
        "cooldown:     5 bars",
        "enabled:      yes",
        "version:      1",
        "signals:      0 (0 fires counting repeats)",
        "rule errors:  0",
    ):
        assert expected in shown.stdout.splitlines(), shown.stdout
    assert traders(db, "show", str(tid)).stdout == shown.stdout  # by id, the same

    result = traders(db, "disable", name)
    assert result.exit_code == 0 and "is now disabled" in result.stdout
    assert listed(db)[tid]["enabled"] is False
    assert "was already disabled" in traders(db, "disable", str(tid)).stdout
    result = traders(db, "enable", str(tid))
    assert result.exit_code == 0 and "is now enabled" in result.stdout
    assert listed(db)[tid]["enabled"] is True

    # a new rule is a new version; a new name, cooldown or symbols is not
    result = traders(db, "edit", name, "--expr", "rsi(14) < 25")
    assert result.exit_code == 0, result.output
    assert "version 2 (was 1)" in result.stdout
    renamed = unique("dip2")
    result = traders(
        db, "edit", str(tid), "--name", renamed, "--cooldown", "0", "--pattern", "*btc"
    )
    assert result.exit_code == 0, result.output
    assert "version 2 (the rule is unchanged)" in result.stdout
    result = traders(db, "edit", renamed, "--interval", "5m", "--all-symbols")
    assert result.exit_code == 0, result.output
    assert "version 3 (was 2)" in result.stdout
    row = listed(db)[tid]
    assert (row["name"], row["expression"], row["interval"], row["version"]) == (
        renamed,
        "rsi(14) < 25",
        "5m",
        3,
    )
    assert (row["symbols_mode"], row["symbols"], row["cooldown_bars"]) == ("all", [], 0)
    assert (
        row["description"] == "buy the dip :rocket: [bold]" and row["trigger_mode"] == "every_close"
    )

    result = traders(db, "edit", renamed, "--pattern", "[A-Z]+USDT")  # a regex: not a glob
    assert result.exit_code == 2 and "character '[' is not allowed" in result.stderr
    result = traders(db, "edit", renamed, "--pattern", "*USDT", "--trigger", "on_change")
    assert result.exit_code == 0, result.output
    row = listed(db)[tid]
    assert (row["symbols_mode"], row["symbols_pattern"], row["trigger_mode"]) == (
        "pattern",
        "*USDT",
        "on_change",
    )
    assert row["version"] == 3
    with psycopg.connect(db) as conn:
        history = conn.execute(
            "SELECT version, expression, interval FROM trader_versions "
            "WHERE trader_id = %s ORDER BY version",
            (tid,),
        ).fetchall()
    assert history == [
        (1, "rsi(14) < 30", "1m"),
        (2, "rsi(14) < 25", "1m"),
        (3, "rsi(14) < 25", "5m"),
    ]


def test_add_with_defaults_watches_every_symbol_on_change(db: str) -> None:
    name = unique("plain")
    tid = added_id(traders(db, "add", name, "close > open", "--interval", "1h", "--disabled"))
    row = listed(db)[tid]
    assert (row["symbols_mode"], row["trigger_mode"], row["cooldown_bars"]) == (
        "all",
        "on_change",
        50,
    )
    assert row["enabled"] is False and row["description"] == ""


@pytest.mark.parametrize(
    ("expression", "column", "message"),
    [
        ("rsi(14) < 30 and clsoe > 3", 17, "clsoe"),  # an unknown name: caret on it
        ("close >", 7, ""),  # the rule ends too early: caret just past the end
        ('rsi(14, tf="7m") > 50', 11, "tf must be a Binance interval"),  # on the value
    ],
)
def test_add_with_a_bad_rule_points_at_the_error_and_saves_nothing(
    db: str, expression: str, column: int, message: str
) -> None:
    before = listed(db)
    name = unique("bad")
    result = traders(db, "add", name, expression, "--interval", "1m")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.splitlines()[0].startswith("bad rule:")
    assert message in result.stderr
    assert caret_column(result.stderr, expression) == column
    assert listed(db) == before
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM traders WHERE name = %s", (name,)).fetchone() == (
            0,
        )


def test_bad_options_are_refused_before_saving(db: str) -> None:
    before = listed(db)
    name = unique("opt")
    result = traders(db, "add", name, "close > open", "--interval", "7m")
    assert result.exit_code == 2 and "interval '7m' is not one of" in result.stderr
    result = traders(db, "add", name, "close > open", "--interval", "1m", "--pattern", "(")
    assert result.exit_code == 2 and "bad --pattern" in result.stderr
    result = traders(
        db, "add", name, "close > open", "--interval", "1m", "--symbols", "A", "--pattern", "B"
    )
    assert result.exit_code == 2 and "exclude each other" in result.stderr
    result = traders(db, "add", name, "close > open", "--interval", "1m", "--trigger", "sometimes")
    assert result.exit_code == 2
    result = traders(db, "add", "1234", "close > open", "--interval", "1m")
    assert result.exit_code == 2 and "would read as an id" in result.stderr
    assert listed(db) == before


def test_edit_with_a_bad_rule_changes_nothing(db: str) -> None:
    name = unique("keep")
    tid = added_id(traders(db, "add", name, "close > open", "--interval", "1m"))
    before = listed(db)[tid]
    result = traders(db, "edit", name, "--expr", "close > opn")
    assert result.exit_code == 2, result.output
    assert "opn" in result.stderr and caret_column(result.stderr, "close > opn") == 8
    # the interval alone is checked with the stored rule: 1M is valid, 7m is not
    result = traders(db, "edit", name, "--interval", "7m")
    assert result.exit_code == 2 and "is not one of" in result.stderr
    assert listed(db)[tid] == before
    result = traders(db, "edit", name)
    assert result.exit_code == 2 and "nothing to change" in result.stderr


def test_unknown_trader_and_taken_names_are_one_line_errors(db: str) -> None:
    for args in (
        ["show", "no-such-trader"],
        ["enable", "no-such-trader"],
        ["disable", "no-such-trader"],
        ["edit", "no-such-trader", "--cooldown", "3"],
    ):
        result = traders(db, *args)
        assert result.exit_code == 1, result.output
        assert result.stderr == "error: no trader named 'no-such-trader'\n"
    result = traders(db, "show", "987654321")
    assert result.exit_code == 1 and result.stderr == "error: no trader with id 987654321\n"

    first, second = unique("a"), unique("b")
    added_id(traders(db, "add", first, "close > open", "--interval", "1m"))
    added_id(traders(db, "add", second, "close > open", "--interval", "1m"))
    result = traders(db, "add", first, "close < open", "--interval", "1m")
    assert result.exit_code == 1 and "already has a trader named" in result.stderr
    result = traders(db, "edit", second, "--name", first)
    assert result.exit_code == 1, result.output
    assert "already has a trader named" in result.stderr and "Traceback" not in result.output
    # the same name under another owner is fine
    added_id(traders(db, "add", first, "close > open", "--interval", "1m", "--owner", "alice"))
    result = traders(db, "show", first)
    assert result.exit_code == 1 and "several traders are named" in result.stderr


def test_show_lists_recent_signals_and_rule_errors(db: str) -> None:
    name = unique("shown")
    tid = added_id(traders(db, "add", name, "close > open", "--interval", "1m", "--cooldown", "5"))

    def fire(symbol: str, open_ms: int, price: str) -> Fire:
        return Fire(
            signal_id(tid, symbol, "1m", open_ms), tid, 1, symbol, "1m", open_ms,
            open_ms + MINUTE - 1, open_ms - 5 * MINUTE, price, {"close": float(price)}, 0,
        )  # fmt: skip

    writer = SignalWriter(db, record_latency=False)
    failure = RuleFailure(tid, 1, "SOLUSDT", T0 + 2 * MINUTE, "ZeroDivisionError: float division")
    assert writer.write(
        [
            fire("BTCUSDT", T0, "42000.5"),
            fire("BTCUSDT", T0 + MINUTE, "42001"),  # within the cooldown: a repeat
            fire("ETHUSDT", T0 + 3 * MINUTE, "2000.25"),
            failure,
        ]
    )
    writer.close()
    assert (writer.counters.new, writer.counters.repeats) == (2, 1)

    result = traders(db, "show", name, env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "signals:      2 (3 fires counting repeats)" in lines
    assert "rule errors:  1" in lines
    rows = [
        [c.strip() for c in re.split(r"[│┃|]", x) if c.strip()]
        for x in lines
        if "USDT" in x and "│" in x
    ]
    assert rows == [
        ["2023-11-14 22:03:00", "ETHUSDT", "2000.25000000", "1"],  # newest kline first
        ["2023-11-14 22:00:00", "BTCUSDT", "42000.50000000", "2"],
        ["1", "SOLUSDT", "2023-11-14 22:02:00", "ZeroDivisionError: float division"],
    ]

    result = traders(db, "show", name, "--signals", "1", env=WIDE)
    assert "last 1 signals" in result.stdout and "BTCUSDT" not in result.stdout

    # after an edit of the rule the recorded error belongs to the old version
    assert traders(db, "edit", name, "--expr", "close < open").exit_code == 0
    result = traders(db, "show", name, "--signals", "0", env=WIDE)
    assert "version:      2" in result.stdout.splitlines()
    assert re.search(r"│ +1 \(old\) │ SOLUSDT", result.stdout), result.stdout


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://klineflow:s3cret-pw@127.0.0.1:1/nowhere",
        "host=127.0.0.1 port=1 dbname=nowhere user=klineflow password=s3cret-pw",
    ],
)
def test_unreachable_database_is_one_clear_line_without_the_password(url: str) -> None:
    for args in (["list"], ["add", "x", "close > open", "--interval", "1m"], ["show", "x"]):
        result = runner.invoke(app, ["traders", *args, "--database-url", url])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith("error: cannot reach PostgreSQL at ")
        assert "127.0.0.1" in result.stderr and "nowhere" in result.stderr
        assert "s3cret-pw" not in result.output
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
        assert result.stdout == ""


# ------------------------------------------------------------------------------ test (dry run)


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def walk(n: int, seed: int, start_ms: int = T0, step: float = 0.004) -> list[Kline]:
    """A seeded random walk of 1m klines; each opens at the previous close."""
    rng = np.random.default_rng(seed)
    closes = np.round(100 * np.exp(np.cumsum(rng.normal(0, step, n))), 4)
    klines, previous = [], closes[0] * (1 - step)
    for i, price in enumerate(closes):
        o, c = round(previous * U), round(price * U)
        klines.append(
            Kline(start_ms + i * MINUTE, start_ms + (i + 1) * MINUTE - 1, o, max(o, c) + U // 50,
                  min(o, c) - U // 50, c, 3 * U, 300 * U, 7, U, 100 * U)
        )  # fmt: skip
        previous = price
    return klines


def resample(klines: list[Kline], size: int) -> list[Kline]:
    """Klines of `size` minutes from whole groups of 1m klines."""
    out = []
    for j in range(len(klines) // size):
        g = klines[j * size : (j + 1) * size]
        out.append(
            Kline(g[0].open_ms, g[-1].close_ms, g[0].open, max(k.high for k in g),
                  min(k.low for k in g), g[-1].close, sum(k.volume for k in g),
                  sum(k.quote_volume for k in g), sum(k.trades for k in g),
                  sum(k.taker_buy_volume for k in g), sum(k.taker_buy_quote_volume for k in g))
        )  # fmt: skip
    return out


def store(client: redis.Redis, keys: KeySpace, symbol: str, interval: str, ks: list[Kline]) -> None:
    writer = KlineWriter(client, keys, RetentionPolicy(5000, {}), publish=False)
    for k in ks:
        writer.add(symbol, interval, k, closed=True)
    writer.flush()


def dry_run(
    redis_url: str,
    keys: KeySpace,
    expression: str,
    *options: str,
    env: dict[str, str] | None = None,
) -> Result:
    return runner.invoke(
        app,
        ["traders", "test", expression, *options, "--redis-url", redis_url,
         "--namespace", keys.namespace],
        env=env,
    )  # fmt: skip


def fires_of(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def summary(text: str) -> dict[str, str]:
    """The summary table's rows, label -> value."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if len(cells) == 2:
            rows[cells[0]] = cells[1]
    return rows


def test_close_above_open_fires_exactly_on_the_rising_closed_klines(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    ks = walk(300, seed=11)
    rising = [k for k in ks if k.close > k.open]
    assert 50 < len(rising) < 250
    # the newest member of the key is a kline still open (and rising): it must not be read
    future = Kline(FAR_FUTURE_OPEN, FAR_FUTURE_OPEN + MINUTE - 1, U, 2 * U, U, 2 * U, U, U, 1, 0, 0)
    store(redis_client, keys, "SYNUSDT", "1m", [*ks, future])

    result = dry_run(redis_url, keys, "close > open", "--symbol", "synusdt", "--interval", "1m",
                     "--json")  # fmt: skip
    fires = fires_of(result)
    assert [f["open_ms"] for f in fires] == [k.open_ms for k in rising]
    assert [f["close"] for f in fires] == [format_units(k.close) for k in rising]
    assert [f["values"]["close"] for f in fires] == [k.close / U for k in rising]
    assert [f["open_time"] for f in fires] == [utc(k.open_ms) for k in rising]
    stats = summary(result.stderr)
    assert stats["klines read 1m"].startswith("300 (2023-11-14 22:00:00 to ")
    assert (stats["evaluated"], stats["not ready (warm-up)"], stats["fired"]) == (
        "300",
        "0",
        str(len(rising)),
    )

    # on_change: only where it starts to hold (the first kline has no previous one)
    result = dry_run(redis_url, keys, "close > open", "--symbol", "SYNUSDT", "--interval", "1m",
                     "--trigger", "on_change", "--json")  # fmt: skip
    starts = [
        ks[i].open_ms
        for i in range(1, len(ks))
        if ks[i].close > ks[i].open and not ks[i - 1].close > ks[i - 1].open
    ]
    assert [f["open_ms"] for f in fires_of(result)] == starts

    # --bars: only the newest N closed klines are read
    result = dry_run(redis_url, keys, "close > open", "--symbol", "SYNUSDT", "--interval", "1m",
                     "--bars", "40", "--json")  # fmt: skip
    assert [f["open_ms"] for f in fires_of(result)] == [
        k.open_ms for k in ks[-40:] if k.close > k.open
    ]
    assert summary(result.stderr)["klines read 1m"].startswith("40 (")


def test_rsi_rule_fires_where_talib_rsi_is_below_the_threshold(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    ks = walk(400, seed=5)
    store(redis_client, keys, "RSIUSDT", "1m", ks)
    closes = np.array([k.close / U for k in ks])
    rsi = talib.RSI(closes, 14)
    threshold = 45.0
    # no RSI so close to the threshold that rounding could decide it
    assert np.nanmin(np.abs(rsi - threshold)) > 1e-6
    # undefined until TA-Lib's own lookback has passed: RSI(14) has no value on bars 0..13
    warm_up = 14
    expected = [i for i in range(warm_up, len(ks)) if rsi[i] < threshold]
    assert 20 < len(expected) < 350

    result = dry_run(redis_url, keys, f"rsi(14) < {threshold}", "--symbol", "RSIUSDT",
                     "--interval", "1m", "--json")  # fmt: skip
    fires = fires_of(result)
    assert [f["open_ms"] for f in fires] == [ks[i].open_ms for i in expected]
    for f, i in zip(fires, expected, strict=True):
        assert f["values"]["rsi(14)"] == pytest.approx(rsi[i], rel=1e-9)
    stats = summary(result.stderr)
    assert (stats["evaluated"], stats["not ready (warm-up)"], stats["fired"]) == (
        "400",
        str(warm_up),
        str(len(expected)),
    )

    # the table form: the newest fires with their helper values
    result = dry_run(redis_url, keys, f"rsi(14) < {threshold}", "--symbol", "RSIUSDT",
                     "--interval", "1m", "--rows", "3", env=WIDE)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "rsi(14)" in result.stdout
    assert f"(the newest 3 of {len(expected)} fires" in result.stdout
    table_rows = [
        [c.strip() for c in re.split(r"[│┃|]", x) if c.strip()]
        for x in result.stdout.splitlines()
        if re.search(r"│ 2023-", x)
    ]
    assert [r[:2] for r in table_rows] == [
        [utc(ks[i].open_ms), format_units(ks[i].close)] for i in expected[-3:]
    ]
    assert [float(r[2]) for r in table_rows] == pytest.approx([rsi[i] for i in expected[-3:]])
    assert summary(result.stdout)["fired"] == str(len(expected))


def test_rule_reading_another_interval_sees_only_closed_bars_of_it(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    ks = walk(300, seed=23, step=0.002)
    five = resample(ks, 5)
    store(redis_client, keys, "TFUSDT", "1m", ks)
    store(redis_client, keys, "TFUSDT", "5m", five)
    sma = talib.SMA(np.array([k.close / U for k in five]), 5)
    expected, values = [], []
    for i, k in enumerate(ks):
        closed = (i + 1) // 5  # 5m bars closed when the 1m bar i closes
        if closed >= 5:
            margin = k.close / U - sma[closed - 1]
            assert abs(margin) > 1e-6
            if margin > 0:
                expected.append(k.open_ms)
                values.append(sma[closed - 1])
    assert 30 < len(expected) < 250

    rule = 'close > sma(5, tf="5m")'
    result = dry_run(redis_url, keys, rule, "--symbol", "TFUSDT", "--interval", "1m", "--json")
    fires = fires_of(result)
    assert [f["open_ms"] for f in fires] == expected
    assert [f["values"]['sma(5, tf="5m")'] for f in fires] == pytest.approx(values, rel=1e-12)
    stats = summary(result.stderr)
    assert stats["klines read 5m (tf=)"] == "60"
    assert stats["not ready (warm-up)"] == "24"  # until five 5m bars have closed
    assert stats["fired"] == str(len(expected))


def test_dry_run_of_a_bad_rule_or_an_unknown_symbol(
    redis_url: str, redis_client: redis.Redis, keys: KeySpace
) -> None:
    store(redis_client, keys, "SYNUSDT", "1m", walk(30, seed=1))
    result = dry_run(redis_url, keys, "close > > open", "--symbol", "SYNUSDT", "--interval", "1m")
    assert result.exit_code == 2, result.output
    assert caret_column(result.stderr, "close > > open") == 8

    result = dry_run(redis_url, keys, "close > open", "--symbol", "NOSUCH", "--interval", "1m")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no closed 1m klines of NOSUCH are stored")
    result = dry_run(redis_url, keys, "close > open", "--symbol", "SYNUSDT", "--interval", "5m")
    assert result.exit_code == 1 and "no closed 5m klines of SYNUSDT" in result.stderr

    result = dry_run(redis_url, keys, "close > open", "--symbol", "SYNUSDT", "--interval", "1m")
    assert result.exit_code == 0
    assert "fired" in result.stdout


def test_dry_run_against_an_unreachable_redis(keys: KeySpace) -> None:
    result = runner.invoke(
        app,
        ["traders", "test", "close > open", "--symbol", "BTCUSDT", "--interval", "1m",
         "--redis-url", "redis://:s3cret-pw@127.0.0.1:1/0"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:1/0: ")
    assert "s3cret-pw" not in result.output and "Traceback" not in result.output


def test_list_and_show_count_each_traders_signals(db: str) -> None:
    name = unique("counted")
    tid = added_id(traders(db, "add", name, "close > open", "--interval", "1m"))
    with psycopg.connect(db, autocommit=True) as conn:
        for i, (age, repeats) in enumerate([("1 hour", 3), ("2 days", 1), ("3 days", 2)]):
            conn.execute(
                "INSERT INTO signals (id, trader_id, trader_version, symbol, interval, "
                "kline_open_ms, kline_close_ms, price, repeat_count, created_at) VALUES "
                "(%s, %s, 1, 'BTCUSDT', '1m', %s, %s, 1, %s, now() - %s::interval)",
                (f"{tid}-BTCUSDT-1m-{i}", tid, i * 60_000, i * 60_000 + 59_999, repeats, age),
            )
    row = listed(db)[tid]
    assert (row["signals"], row["signals_24h"]) == (3, 1)
    shown = traders(db, "show", str(tid))
    assert "signals:      3 (6 fires counting repeats)" in shown.stdout.splitlines()
    table = traders(db, "list", env=WIDE)
    line = next(x for x in table.stdout.splitlines() if name in x)
    assert re.split(r"\s{2,}", line.strip())[8:10] == ["3", "1"]
