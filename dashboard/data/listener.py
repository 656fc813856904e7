"""One thread per process LISTENing on channel `signals`, keeping the newest signals.

The flow NOTIFYs each new signal's id at commit. The listener reads each announced row
(id, trader, symbol, interval, kline, created_at) as the process's own login role: this
buffer is the process's, not a user's; pages read what a user may see through row-level
security (`Database.signals`), using `seq` to know when to ask again.

After every (re)connect it first LISTENs, then catches up with a query for rows recorded
since the newest it had seen (with an overlap, since a row's created_at is its
transaction's start and a long transaction can commit after a younger one), so a signal
committed while the listener was away is still delivered, exactly once (ids are kept).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CATCH_UP_OVERLAP = timedelta(seconds=60)
_ROW = "SELECT id, trader_id, symbol, interval, kline_open_ms, created_at FROM signals "


@dataclass(frozen=True)
class Seen:
    id: str
    trader_id: int
    symbol: str
    interval: str
    kline_open_ms: int
    created_at: datetime
    via: str  # "notify", "catch-up" or "initial"


class SignalListener(threading.Thread):
    def __init__(self, url: str, keep: int = 2000, initial: int = 200) -> None:
        super().__init__(name="klineflow-signals-listener", daemon=True)
        self.url = url
        self._keep = keep
        self._initial = initial
        self._lock = threading.Lock()
        self._rows: OrderedDict[str, Seen] = OrderedDict()  # by arrival, newest last
        self._halt = threading.Event()
        self.connected = threading.Event()
        self.reconnect_allowed = threading.Event()  # tests hold reconnects back with clear()
        self.reconnect_allowed.set()
        self.seq = 0  # bumped whenever a signal arrives
        self.connects = 0
        self.backend_pid: int | None = None
        self.last_error = ""
        self._cursor: tuple[datetime, str] | None = None  # newest (created_at, id) seen

    # -- reading the buffer ------------------------------------------------------------------
    def newest(self, n: int = 100) -> list[Seen]:
        with self._lock:
            rows = list(self._rows.values())
        return sorted(rows, key=lambda s: (s.created_at, s.id), reverse=True)[:n]

    def seen(self, signal_id: str) -> Seen | None:
        with self._lock:
            return self._rows.get(signal_id)

    # -- the thread ----------------------------------------------------------------------------
    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        backoff = 0.2
        while not self._halt.is_set():
            self.reconnect_allowed.wait(timeout=1.0)
            if not self.reconnect_allowed.is_set():
                continue
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=3) as conn:
                    self.backend_pid = conn.info.backend_pid
                    conn.execute("LISTEN signals")
                    self.connects += 1
                    self._catch_up(conn)
                    self.connected.set()
                    backoff = 0.2
                    while not self._halt.is_set():
                        ids = [n.payload for n in conn.notifies(timeout=0.5)]
                        if ids:
                            self._read(conn, ids)
            except psycopg.Error as exc:
                self.last_error = " ".join(str(exc).split())[:300]
                log.info("signals listener lost (%s); reconnecting in %.1fs", exc, backoff)
            finally:
                self.connected.clear()
                self.backend_pid = None
            self._halt.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _catch_up(self, conn: psycopg.Connection[Any]) -> None:
        cursor = self._cursor
        if cursor is None:
            rows = conn.execute(
                _ROW + "ORDER BY created_at DESC, id DESC LIMIT %s", (self._initial,)
            ).fetchall()
            self._add(reversed(rows), "initial")
            return
        rows = conn.execute(
            _ROW + "WHERE created_at >= %s ORDER BY created_at, id LIMIT 10000",
            (cursor[0] - CATCH_UP_OVERLAP,),
        ).fetchall()
        self._add(rows, "catch-up")

    def _read(self, conn: psycopg.Connection[Any], ids: list[str]) -> None:
        rows = conn.execute(_ROW + "WHERE id = ANY(%s) ORDER BY created_at, id", (ids,)).fetchall()
        self._add(rows, "notify")

    def _add(self, rows: Any, via: str) -> None:
        added = 0
        with self._lock:
            for r in rows:
                if r[0] in self._rows:
                    continue
                seen = Seen(str(r[0]), int(r[1]), r[2], r[3], int(r[4]), r[5], via)
                self._rows[seen.id] = seen
                added += 1
                key = (seen.created_at, seen.id)
                if self._cursor is None or key > self._cursor:
                    self._cursor = key
            while len(self._rows) > self._keep:
                self._rows.popitem(last=False)
            if added:
                self.seq += 1


def stop_listener(listener: SignalListener, timeout: float = 5.0) -> None:
    listener.stop()
    listener.reconnect_allowed.set()
    with contextlib.suppress(RuntimeError):
        listener.join(timeout)
