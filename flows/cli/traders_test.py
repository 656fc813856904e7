"""`klineflow traders test`: where a rule would have fired over the klines stored in Redis
(the dry run of `klineflow traders`, with the flow's own engine)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flows.app.traders import check_interval, stored_klines
from flows.cli.common import Namespace, RedisUrl, _settings
from flows.cli.traders import (
    Trigger,
    _bad_rule,
    _fail,
    _say,
    _utc,
    console,
    out,
    traders_app,
)
from flows.domain.clock import SYSTEM_CLOCK

if TYPE_CHECKING:
    from flows.domain.kline import Kline
    from flows.signals.preview import PreviewResult


def _value_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


@traders_app.command("test")
def test_rule(
    expression: Annotated[str, typer.Argument(help='the rule, e.g. "rsi(14) < 30"')],
    symbol: Annotated[str, typer.Option("--symbol", help="the symbol's stored klines")],
    interval: Annotated[str, typer.Option("--interval", help="the rule's interval")],
    trigger: Annotated[
        Trigger, typer.Option(help="every_close or on_change")
    ] = Trigger.every_close,
    bars: Annotated[int, typer.Option(min=1, help="newest closed klines read per interval")] = 1000,
    rows: Annotated[int, typer.Option(min=0, help="newest fires listed (0: all)")] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="every fire as a JSON line (the summary on stderr)")
    ] = False,
    redis_url: RedisUrl = None,
    namespace: Namespace = None,
) -> None:
    """Where a rule would have fired over the klines stored in Redis (no cooldown applied)."""
    from flows.rules.errors import RuleError
    from flows.signals.book import TraderRow, compile_trader
    from flows.signals.preview import preview

    check_interval(interval)
    try:
        compile_trader(TraderRow(0, "test", expression, interval, trigger_mode=trigger.value))
    except RuleError as e:
        _bad_rule(expression, e)
    settings = _settings(redis_url=redis_url, namespace=namespace)
    sym = symbol.strip().upper()
    # The newest member of a key may be the kline still open: only klines that closed before
    # now are read (the newest `bars` of them).
    _, stored = stored_klines(settings, sym, bars, SYSTEM_CLOCK.now_ms())
    read: dict[str, Sequence[Kline]] = {}

    def klines(iv: str) -> Sequence[Kline]:
        if iv not in read:
            read[iv] = stored(iv)
        return read[iv]

    try:
        if not klines(interval):
            where = f" in namespace {settings.namespace!r}" if settings.namespace else ""
            _fail(f"no closed {interval} klines of {sym} are stored{where}")
        result = preview(expression, interval, sym, klines, trigger.value)
    except RuleError as e:  # already checked above; kept for a rule the preview rejects
        _bad_rule(expression, e)
    for iv in sorted(set(read) - {interval}):
        if not read[iv]:
            console.print(
                f"note: no closed {iv} klines of {sym} are stored, so what the rule reads with "
                f'tf="{iv}" is never ready',
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
    if as_json:
        for fire in result.fires:
            _say(
                json.dumps(
                    {
                        "open_ms": fire.open_ms,
                        "open_time": _utc(fire.open_ms),
                        "close_ms": fire.close_ms,
                        "close": fire.price,
                        "values": fire.values,
                    },
                    separators=(",", ":"),
                )
            )
    else:
        _print_fires(expression, sym, interval, result, rows)
    _print_test_summary(result, interval, read, console if as_json else out)


def _print_fires(
    expression: str, symbol: str, interval: str, result: PreviewResult, rows: int
) -> None:
    fires = result.fires
    if not fires:
        _say(f"{expression} did not fire on {symbol} {interval}")
        return
    shown = fires[-rows:] if rows else fires
    calls = [k for k in fires[0].values if k != "close"]
    table = Table(title=Text(f"{expression} on {symbol} {interval}"))
    table.add_column("open time (UTC)")
    table.add_column("close", justify="right")
    for call in calls:
        table.add_column(Text(call), justify="right")
    for fire in shown:
        table.add_row(
            _utc(fire.open_ms), fire.price, *(_value_text(fire.values.get(c)) for c in calls)
        )
    out.print(table)
    if len(shown) < len(fires):
        _say(f"(the newest {len(shown)} of {len(fires)} fires; --rows 0 lists them all)")


def _print_test_summary(
    result: PreviewResult, interval: str, read: dict[str, Sequence[Kline]], target: Console
) -> None:
    table = Table(title="summary", show_header=False)
    main = read.get(interval, ())
    span = f" ({_utc(main[0].open_ms)} to {_utc(main[-1].open_ms)})" if main else ""
    table.add_row(f"klines read {interval}", f"{result.klines:,}{span}")
    for iv in sorted(set(read) - {interval}):
        table.add_row(f"klines read {iv} (tf=)", f"{len(read[iv]):,}")
    table.add_row("evaluated", f"{result.evaluated:,}")
    table.add_row("not ready (warm-up)", f"{result.not_ready:,}")
    table.add_row("fired", f"{len(result.fires):,}")
    for failure in result.failures:
        table.add_row("rule raised", f"{_utc(failure.open_ms)}: {failure.error}")
    target.print(table)
