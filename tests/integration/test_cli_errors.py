"""The command line's error boundary: each failure a person can meet is one line naming the
cause and what to do, with the documented exit code (1 failed, 2 bad usage or input), no
traceback, nothing stored changed and no backtest run left 'running'.

Real servers throughout: a Redis port nobody listens on is a real refused connection, a role
that does not exist is refused by the real PostgreSQL.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner, Result

from flows.cli import app

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 with nothing listening (bound, never listened on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def _one_line(result: Result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.output
    first = lines[0]
    for needle in needles:
        assert needle in first, first
    return first


def _dump(tmp_path: Path) -> Path:
    path = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    rows = [f"{i},{100 + i % 3}.5,1.0,{i},{i},{1_704_067_200_000 + i * 7_000},true,true"
            for i in range(1, 200)]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    return path


def test_an_unreachable_redis_is_one_line_exit_1(closed_port: int, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port}/0"
    _one_line(_run("klines", "XRPETH", "1m", "--redis-url", url), 1, "cannot reach Redis",
              "--redis-url")  # fmt: skip
    _one_line(_run("replay", str(_dump(tmp_path)), "--redis-url", url, "--no-progress"), 1,
              "cannot reach Redis")  # fmt: skip


def test_a_malformed_redis_url_is_exit_2() -> None:
    _one_line(_run("klines", "XRPETH", "1m", "--redis-url", "http://nowhere"), 2,
              "malformed Redis URL")  # fmt: skip


def test_a_bad_setting_is_one_line_without_links(redis_url: str, tmp_path: Path) -> None:
    first = _one_line(
        _run("replay", str(_dump(tmp_path)), "--intervals", "7m", "--redis-url", redis_url),
        2, "bad setting", "7m",
    )  # fmt: skip
    assert "http" not in first


def test_a_login_postgresql_refuses_is_named_as_such(database_url: str) -> None:
    info = psycopg.conninfo.conninfo_to_dict(database_url)
    info["user"] = "nobody_here"
    url = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    _one_line(_run("migrate", "--database-url", url), 1, "PostgreSQL refused the login",
              "--database-url")  # fmt: skip


def test_useless_input_is_a_warning_and_exit_1(redis_url: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    binary = tmp_path / "BTCUSDT-aggTrades-2024-01-01.csv"
    binary.write_bytes(bytes(range(256)) * 20)
    (tmp_path / "dump").mkdir()
    nameless = tmp_path / "trades.csv"
    nameless.write_text(_dump(tmp_path / "dump").read_text())
    cases = [(empty, "is empty"), (binary, "were not trades"), (nameless, "--symbol")]
    for path, needle in cases:
        result = _run("replay", str(path), "--redis-url", redis_url, "--namespace", "t_empty",
                      "--no-progress")  # fmt: skip
        _one_line(result, 1, "no trades read", needle)


def test_a_missing_file_is_exit_2(redis_url: str, tmp_path: Path) -> None:
    _one_line(_run("replay", str(tmp_path / "nope.csv"), "--redis-url", redis_url,
                   "--no-progress"), 2, "no such file")  # fmt: skip


def _runs(db: str) -> list[tuple[str, int]]:
    with psycopg.connect(db) as conn:
        return [(str(s), int(t or 0)) for s, t in
                conn.execute("SELECT status, trades FROM backtest_runs ORDER BY id")]  # fmt: skip


def test_failed_backtests_leave_no_running_run(
    signals_db: str, redis_url: str, closed_port: int, tmp_path: Path
) -> None:
    good = _dump(tmp_path)
    garbage = tmp_path / "ETHUSDT-aggTrades-2024-01-01.csv"
    garbage.write_text("not,a,trade\n" * 50)
    common = ["--expr", "close > open", "--interval", "1m", "--no-progress",
              "--database-url", signals_db]  # fmt: skip
    closed = f"redis://127.0.0.1:{closed_port}/0"
    _one_line(_run("backtest", "--data", str(good), *common, "--redis-url", closed), 1,
              "cannot reach Redis")  # fmt: skip
    _one_line(_run("backtest", "--data", str(tmp_path / "missing.csv"), *common,
                   "--redis-url", redis_url), 2, "no such file")  # fmt: skip
    _one_line(_run("backtest", "--data", str(garbage), *common, "--redis-url", redis_url), 1,
              "no trades read")  # fmt: skip
    assert _runs(signals_db) == [("failed", 0)] * 3
    done = _run("backtest", "--data", str(good), *common, "--redis-url", redis_url)
    assert done.exit_code == 0, done.output
    assert _runs(signals_db)[-1] == ("done", 199)


def test_backtest_rules_and_intervals_are_checked_first_with_a_caret(tmp_path: Path) -> None:
    data = str(_dump(tmp_path))
    result = _run("backtest", "--data", data, "--expr", "rsi(14) < 3O", "--interval", "1m")
    _one_line(result, 2, "bad rule:", "malformed number")
    assert "  rsi(14) < 3O" in result.stderr and re.search(r"\n +\^", result.stderr)
    result = _run("backtest", "--data", data, "--expr", "close > open", "--interval", "7m")
    first = _one_line(result, 2, "7m")
    assert "bad rule" not in first


def test_version_and_debug() -> None:
    result = _run("--version")
    assert result.exit_code == 0 and re.match(r"klineflow \S+", result.stdout)
    debug = _run("--debug", "klines", "X", "1m", "--redis-url", "http://nowhere")
    assert debug.exit_code != 0 and isinstance(debug.exception, ValueError)


def test_every_command_the_readme_shows_has_help() -> None:
    text = README.read_text()
    table = text[text.index("## The `klineflow` command") :]
    table = table[: table.index("\n\n", table.index("| command |"))]
    shown = set()
    for line in table.splitlines():
        found = re.match(r"\| `klineflow ([a-z-]+)(?: ([a-z|\\-]+))?", line)
        if not found:
            continue
        group, subs = found.group(1), found.group(2)
        if subs and not subs.startswith("-") and group in ("traders", "users", "access",
                                                            "services"):  # fmt: skip
            shown.update((group, s) for s in subs.replace("\\", "").split("|") if s)
        shown.add((group,))
    assert len(shown) > 20
    for command in sorted(shown):
        result = _run(*command, "--help")
        assert result.exit_code == 0, (command, result.output)
        assert "Usage: " in result.stdout


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 something listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_taken_port_fails_the_start(
    taken_port: int, redis_url: str, signals_db: str, keys: object
) -> None:
    port = str(taken_port)
    servers = ["--redis-url", redis_url]
    _one_line(_run("demo", "--port", port, "--no-dashboard", *servers), 1,
              f"127.0.0.1:{port}", "port is taken", "--port")  # fmt: skip
    _one_line(_run("demo", "--port", "0", "--dashboard-port", port, *servers), 1,
              "the dashboard", "--dashboard-port")  # fmt: skip
    _one_line(_run("api", "--port", port, *servers), 1, "the API", "port is taken")
    _one_line(_run("dashboard", "--port", port, "--database-url", signals_db, *servers), 1,
              "the dashboard", "port is taken")  # fmt: skip
