"""A private Redis for one backtest started from the dashboard.

The dashboard's Redis user may only read (flows.access): a backtest, which builds its klines
with the same writer as the live flow, therefore runs on a server of its own, started in a
temporary directory for the run (no append-only file, no snapshot) and stopped and removed
afterwards. The live Redis never sees a backtest's writes, nor its load.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.services import EmbeddedRedis


@contextmanager
def scratch_redis() -> Iterator[str]:
    """Start a throwaway embedded Redis; yield its URL; stop it and delete its files."""
    folder = Path(tempfile.mkdtemp(prefix="kfbt-"))  # short: the unix socket lives there
    server = EmbeddedRedis(folder, durable=False)
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
