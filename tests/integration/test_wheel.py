"""The built wheel, installed outside the checkout, works from an empty directory: `klineflow
migrate` applies every migration (the wheel carries sql/ as flows/sql/) and `klineflow replay`
stores klines in Redis, against the session's real servers.

What this proves: the wheel holds the code and the migrations, its entry point runs, and the
installed package reads nothing from the checkout or the working directory (flows and its
migrations are loaded from the new environment, checked below). What it does not prove: that
pip resolves the declared dependencies on a machine of its own. To keep the suite short the
wheel is installed with --no-deps into a new virtual environment that reuses this one's
installed dependencies (a path line, so this environment's own klineflow, an editable install,
is not loaded); tests/unit/test_dependencies.py checks that every import is declared, and the
floors are those of pyproject.toml's comments.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import sysconfig
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import redis

from flows.domain.keys import KeySpace
from flows.storage.migrations import applied, migration_files
from tests.conftest import REPO, NewDatabase

pytestmark = pytest.mark.timeout(600)

T0 = 1_700_000_040_000  # a minute boundary
MINUTES = 3


def _run(args: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment, outside the repository, with the wheel built from the
    checkout installed in it; its dependencies are this environment's."""
    work = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    dist = work / "dist"
    # --no-build-isolation: the dev extra's hatchling, so the build fetches nothing
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, REPO], work, env)
    (wheel,) = dist.glob("klineflow-*.whl")
    target = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", target], work, env)
    python = target / "bin" / "python"
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], work, env)
    site = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env
    )
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    # plain path lines: appended after the new site-packages, and their own .pth files (this
    # environment's editable klineflow) are not run
    (Path(site.strip()) / "klineflow_test_deps.pth").write_text("\n".join(sorted(ours)) + "\n")
    return target


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLINEFLOW_", "PYTHON"))}
    env["KLINEFLOW_DATA_DIR"] = str(tmp_path / "data")  # embedded servers: none started here
    return env


def test_the_installed_package_and_its_migrations_come_from_the_wheel(
    venv: Path, empty_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import flows, flows.storage.migrations as m; "
        "print(flows.__file__); print(m.MIGRATIONS_DIR)"
    )
    out = _run([venv / "bin" / "python", "-c", code], empty_dir, _env(tmp_path)).splitlines()
    package, migrations = Path(out[0]), Path(out[1])
    assert package.is_relative_to(venv) and migrations.is_relative_to(venv), out
    assert migrations == package.parent / "sql"
    shipped = [(m.name, m.checksum) for m in migration_files(migrations)]
    assert shipped == [(m.name, m.checksum) for m in migration_files(REPO / "sql")]


def test_the_wheel_carries_the_native_dump_parser(
    venv: Path, empty_dir: Path, tmp_path: Path
) -> None:
    """The install compiled flows/native/dump_lines.c into the wheel, and it loads there."""
    code = "import flows.native as n; print(n.__file__); print(n.dump_lines is not None)"
    out = _run([venv / "bin" / "python", "-c", code], empty_dir, _env(tmp_path)).splitlines()
    assert Path(out[0]).is_relative_to(venv), out
    assert (Path(out[0]).parent / "libklineflow.so.1").is_file()
    assert out[1] == "True"


def test_klineflow_migrate_from_an_empty_directory_applies_every_migration(
    venv: Path, empty_dir: Path, tmp_path: Path, new_database: NewDatabase
) -> None:
    url = new_database()
    klineflow = venv / "bin" / "klineflow"
    out = _run([klineflow, "migrate", "--database-url", url], empty_dir, _env(tmp_path))
    names = [m.name for m in migration_files(REPO / "sql")]
    assert names and names[0] in out
    assert applied(url) == [(m.name, m.checksum) for m in migration_files(REPO / "sql")]
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT to_regclass('signals') IS NOT NULL").fetchone()
    assert row == (True,)
    out = _run([klineflow, "migrate", "--database-url", url], empty_dir, _env(tmp_path))
    assert "up to date" in out
    assert list(empty_dir.iterdir()) == []


def _agg(a: int, price: Decimal, qty: Decimal, t: int) -> bytes:
    return (
        f'{{"stream":"btcusdt@aggTrade","data":{{"e":"aggTrade","E":{t},"s":"BTCUSDT",'
        f'"a":{a},"p":"{price:.8f}","q":"{qty:.8f}","f":{a},"l":{a},"T":{t},"m":false,'
        '"M":true}}'
    ).encode()


def test_klineflow_replay_from_an_empty_directory_stores_klines(
    venv: Path,
    empty_dir: Path,
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    keys: KeySpace,
) -> None:
    rng = random.Random(14)
    trades: list[tuple[int, Decimal, Decimal]] = []
    for minute in range(MINUTES):
        times = sorted(rng.sample(range(60_000), 8))
        for t in times:
            price = Decimal(rng.randint(9_900_000, 10_100_000)) / 100_000
            trades.append((T0 + minute * 60_000 + t, price, Decimal(rng.randint(1, 500)) / 100))
    capture = tmp_path / "capture.txt"
    lines = [b"wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade <-> 1700000000.0"]
    lines += [b"%d.0: %s" % (t // 1000, _agg(i + 1, p, q, t)) for i, (t, p, q) in enumerate(trades)]
    capture.write_bytes(b"\n".join(lines) + b"\n")

    args = ["--redis-url", redis_url, "--namespace", keys.namespace, "--no-progress"]
    klineflow = venv / "bin" / "klineflow"
    _run([klineflow, "replay", capture, "--intervals", "1m", *args], empty_dir, _env(tmp_path))
    assert list(empty_dir.iterdir()) == []

    stored = [json.loads(m) for m in redis_client.zrange(keys.klines("BTCUSDT", "1m"), 0, -1)]
    expected = []
    for minute in range(MINUTES):
        start = T0 + minute * 60_000
        in_minute = [(p, q) for t, p, q in trades if start <= t < start + 60_000]
        prices = [p for p, _ in in_minute]
        expected.append(
            [start, f"{prices[0]:.8f}", f"{max(prices):.8f}", f"{min(prices):.8f}",
             f"{prices[-1]:.8f}", f"{sum(q for _, q in in_minute):.8f}", start + 59_999,
             len(in_minute)]
        )  # fmt: skip
    assert [[*row[:7], row[8]] for row in stored] == expected
