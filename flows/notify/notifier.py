"""The notifier: delivers the outbox (sql/0013) to the channels, once each, losing nothing.

One loop owns the database work; sends run on a pool of threads, at most one message in
flight per channel, so a slow or unreachable receiver holds up only its own channel.

- Woken by NOTIFY `notifications` (a signal was queued), by a send finishing, or when the
  next retry or pace is due (at least once a second).
- A channel with waiting signals, nothing in flight or unacknowledged, and its pace passed
  (`pace_<kind>_s` since its last message, or the service's ``retry_after``) gets ONE
  message with all its waiting signals (up to `digest_most`): a signal alone goes out at
  once; a burst, while the channel is busy or pacing, is folded into digests.
- A message is written before it is sent and marked when acknowledged (flows.notify.outbox):
  after a kill at any moment the next notifier resends what was not acknowledged, with the
  same idempotency key (receivers that keep keys see each message once).
- Failures: retried with doubling waits up to `retry_most_s`; refused for good (a wrong
  token) or still failing after `give_up_s`, the message is marked failed with its reason,
  which its owner sees (`klineflow channels list`, the dashboard's delivery log) and can
  retry.
- One notifier works at a time per database (an advisory lock); a second one waits, and
  takes over when the first one's connection ends.
- PostgreSQL away: the loop waits and reconnects; outcomes not yet recorded are kept and
  recorded when it answers.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import psycopg

from flows.domain.clock import Clock, SystemClock
from flows.notify import outbox, senders
from flows.notify.outbox import Delivery
from flows.notify.senders import Outcome
from flows.notify.settings import NotifySettings

log = logging.getLogger(__name__)

CHANNEL = "notifications"
LOCK_KEY = 0x6B666E6F74696679 & 0x7FFFFFFFFFFFFFFF  # one notifier per database
WAKE = "wake"


@dataclass
class NotifierStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    messages_made: int = 0
    by_state: dict[str, int] = field(default_factory=dict)


class Notifier:
    def __init__(
        self, database_url: str, settings: NotifySettings, clock: Clock | None = None
    ) -> None:
        self.url = database_url
        self.settings = settings
        self.clock = clock or SystemClock()
        self.stats = NotifierStats()
        self.ready = threading.Event()  # set once this notifier holds the lock and listens
        self._wake: queue.Queue[object] = queue.Queue()
        self._in_flight: dict[int, Future[Outcome]] = {}
        self._sending: dict[int, Delivery] = {}
        self._not_before: dict[int, float] = {}  # channel -> monotonic time
        self._unrecorded: list[tuple[Delivery, Outcome]] = []

    # -- the loop ----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set; then wait for the sends in flight and record them."""
        pool = ThreadPoolExecutor(self.settings.senders, thread_name_prefix="notify-send")
        listener = threading.Thread(target=self._listen, args=(stop,), daemon=True,
                                    name="notify-listen")  # fmt: skip
        listener.start()
        pause = 0.5
        try:
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True) as conn:
                        if not self._lock(conn, stop):
                            return
                        self.ready.set()
                        pause = 0.5
                        self._serve(conn, pool, stop)
                except psycopg.Error as e:  # away, or its schema not migrated yet
                    log.warning("notifier: PostgreSQL refused or unreachable (%s); retrying",
                                " ".join(str(e).split())[:200])  # fmt: skip
                    stop.wait(pause)
                    pause = min(pause * 2, 10.0)
        finally:
            pool.shutdown(wait=True)
            self._record_late()

    def _lock(self, conn: psycopg.Connection[tuple[object, ...]], stop: threading.Event) -> bool:
        while not stop.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
            if row is not None and row[0]:
                return True
            stop.wait(1.0)
        return False

    def _serve(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        pool: ThreadPoolExecutor,
        stop: threading.Event,
    ) -> None:
        while not stop.is_set():
            self._finish(conn)
            self._start_due(conn, pool)
            self._fold(conn, pool)
            timeout = self._timeout(conn)
            try:
                self._wake.get(timeout=timeout)
                while True:  # drain: one pass serves every wake-up so far
                    self._wake.get_nowait()
            except queue.Empty:
                pass
        # stopping: let the messages in flight finish and record them
        for future in list(self._in_flight.values()):
            future.result()
        self._finish(conn)

    def _listen(self, stop: threading.Event) -> None:
        """Turns NOTIFY into wake-ups; reconnects when PostgreSQL goes away."""
        while not stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.put(WAKE)  # anything queued while not listening
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            self._wake.put(WAKE)
            except psycopg.Error:
                stop.wait(1.0)

    # -- steps -------------------------------------------------------------------------
    def _finish(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Record every finished send (and any left unrecorded while PostgreSQL was away)."""
        for channel_id, future in list(self._in_flight.items()):
            if not future.done():
                continue
            del self._in_flight[channel_id]
            d = self._sending.pop(channel_id)
            self._unrecorded.append((d, future.result()))
        while self._unrecorded:
            d, outcome = self._unrecorded[0]
            state = outbox.record(conn, d, outcome, self.settings)
            self._unrecorded.pop(0)
            self._count(d, outcome, state)
            pace = self.settings.pace_s(d.channel.kind)
            wait = outcome.retry_after_s if outcome.retry_after_s is not None else pace
            self._not_before[d.channel.id] = self.clock.monotonic_s() + wait

    def _count(self, d: Delivery, outcome: Outcome, state: str) -> None:
        self.stats.by_state[state] = self.stats.by_state.get(state, 0) + 1
        if state == "sent":
            self.stats.delivered += 1
        elif state == "failed":
            self.stats.failed += 1
            log.warning("notifier: message %d to channel %d (%s) failed: %s", d.id,
                        d.channel.id, d.channel.kind, outcome.error)  # fmt: skip
        else:
            self.stats.retried += 1
            log.info("notifier: message %d to channel %d will be tried again: %s", d.id,
                     d.channel.id, outcome.error)  # fmt: skip

    def _paced(self, channel_id: int) -> bool:
        return self._not_before.get(channel_id, 0.0) > self.clock.monotonic_s()

    def _start_due(
        self, conn: psycopg.Connection[tuple[object, ...]], pool: ThreadPoolExecutor
    ) -> None:
        for d in outbox.due(conn, self._in_flight.keys()):
            if not self._paced(d.channel.id):
                self._start(d, pool)

    def _fold(self, conn: psycopg.Connection[tuple[object, ...]], pool: ThreadPoolExecutor) -> None:
        now = self.clock.monotonic_s()
        held = set(self._in_flight) | {c for c, t in self._not_before.items() if t > now}
        made = outbox.fold(conn, held, self.settings)
        if made:
            self.stats.messages_made += made
            self._start_due(conn, pool)

    def _start(self, d: Delivery, pool: ThreadPoolExecutor) -> None:
        self._sending[d.channel.id] = d
        self._in_flight[d.channel.id] = pool.submit(self._send, d)

    def _send(self, d: Delivery) -> Outcome:
        try:
            now_s = self.clock.now_ms() // 1000
            return senders.send(d.channel, d.message, d.key, self.settings, now_s)
        except Exception as e:  # a sender's own bug: recorded as the message's failure
            log.exception("notifier: sending message %d failed", d.id)
            return Outcome(False, f"internal error: {type(e).__name__}")
        finally:
            self._wake.put(WAKE)

    def _timeout(self, conn: psycopg.Connection[tuple[object, ...]]) -> float:
        timeout = 1.0
        to_next = outbox.seconds_to_next(conn)
        if to_next is not None:
            timeout = min(timeout, to_next)
        now = self.clock.monotonic_s()
        for t in self._not_before.values():
            if t > now:
                timeout = min(timeout, t - now)
        return max(timeout, 0.005)

    def _record_late(self) -> None:
        """At the end, what could not be recorded is retried once; a message left
        unrecorded is resent by the next notifier (same key)."""
        if not self._unrecorded:
            return
        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                self._finish(conn)
        except psycopg.Error:
            log.warning("notifier: %d outcome(s) not recorded; their messages will be sent "
                        "again (same idempotency key)", len(self._unrecorded))  # fmt: skip
