"""Write klines to Redis: one sorted-set member per kline, replaced atomically.

Layout (names from `flows.domain.keys`):
- ``klines:{SYMBOL}:{interval}``: score = open time ms, member = the 12-element REST array as
  compact JSON. An update removes the member at that score and adds the new one inside one Lua
  call, so a reader never sees two members for one open time, nor none.
- ``klines:last_closed:{SYMBOL}:{interval}``: open time of the newest closed kline (only ever
  moves forward).
- a PUBLISH on ``klines:closed`` of ``{"s":SYMBOL,"i":interval,"t":open_ms}`` per closed kline.
- retention: the newest N members per key (default 1,000; 1m keeps 1,500 for a 24-hour window).

A batch is one MULTI/EXEC pipeline (all of it applied, or none: a retry after a lost
connection is clean): one script call per 256 (symbol, interval) groups touched, plus dead
letters, symbol registrations and replay checkpoints, in a single round trip.

A Redis that restarts without persistence (or with less than it had acknowledged) loses
writes. The live writer notices (a sentinel key it set at its first write is gone) and writes
again the closed klines it keeps in a small journal (the newest `journal` of each symbol and
interval), and leaves a data-quality record saying from when older ones may be missing.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis

from flows.domain.deadletter import DeadLetter
from flows.domain.keys import KeySpace
from flows.domain.kline import Kline
from flows.sources.items import GapReport, QualityNote

log = logging.getLogger(__name__)

# One call upserts many (symbol, interval) groups. ARGV[1]: the closed-kline channel ('' for
# none); ARGV[2]: a blob of groups, each a header line
#   "#<zset key> <last_closed key> <retention> <symbol> <interval>\n"
# followed by its klines in time order, "<open_ms> <closed 0|1> <member>\n".
# Few calls with one blob each instead of one call (or three arguments) per kline: redis-py's
# per-command and per-argument packing was the cost that mattered (a profile of 1,600 live
# symbols spent 40% of the flow's CPU there). The keys are named in the blob rather than in
# KEYS, so this needs a standalone Redis (not Redis Cluster); ACL key patterns still apply to
# every command the script runs. Each transaction begins with SCRIPT LOAD of it (for a script
# Redis holds already, a digest and a lookup) and then calls it by digest: redis-py's own way,
# SCRIPT EXISTS before every pipeline, was a second round trip per write (a live flow writes
# hundreds of times a second), and an EVALSHA finding no script inside MULTI/EXEC (a Redis
# restarted meanwhile) would fail alone while the other commands ran, so that a retry would
# add their stream entries twice.
_UPSERT_LUA = """
local channel = ARGV[1]
local zkey, lkey, keep, symbol, interval, top
local newest = -1
local members, order = {}, {}
local function finish()
  if zkey == nil then return end
  local args = {}
  for _, t in ipairs(order) do
    -- a kline opening after everything stored replaces nothing: no removal to look for
    if top ~= nil and tonumber(t) <= top then redis.call('ZREMRANGEBYSCORE', zkey, t, t) end
    args[#args + 1] = t
    args[#args + 1] = members[t]
    if #args >= 1000 then
      redis.call('ZADD', zkey, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('ZADD', zkey, unpack(args)) end
  if keep > 0 then redis.call('ZREMRANGEBYRANK', zkey, 0, -(keep + 1)) end
  if newest >= 0 then
    local cur = tonumber(redis.call('GET', lkey) or '-1')
    if newest > cur then redis.call('SET', lkey, string.format('%d', newest)) end
  end
end
for line in string.gmatch(ARGV[2], '([^\\n]+)\\n') do
  if string.byte(line, 1) == 35 then
    finish()
    local z, l, k, s, i = string.match(line, '^#(%S+) (%S+) (%d+) (%S+) (%S+)$')
    zkey, lkey, keep, symbol, interval, newest = z, l, tonumber(k), s, i, -1
    local last = redis.call('ZRANGE', zkey, -1, -1, 'WITHSCORES')
    top = last[2] and tonumber(last[2]) or nil
    members, order = {}, {}
  else
    local t, closed, member = string.match(line, '^(%d+) (%d) (.+)$')
    if members[t] == nil then order[#order + 1] = t end
    members[t] = member  -- a later line for the same open time replaces an earlier one
    if closed == '1' then
      local tn = tonumber(t)
      if tn > newest then newest = tn end
      if channel ~= '' then
        local msg = '{"s":"' .. symbol .. '","i":"' .. interval .. '","t":' .. t .. '}'
        redis.call('PUBLISH', channel, msg)
      end
    end
  end
end
finish()
return 0
"""
_UPSERT_SHA = hashlib.sha1(_UPSERT_LUA.encode()).hexdigest()
_GROUPS_PER_CALL = 256  # bounds how long one call holds Redis (readers wait meanwhile)


DEFAULT_RETENTION = 1000
DEFAULT_RETENTION_BY_INTERVAL: Mapping[str, int] = {"1m": 1500}


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    default: int = DEFAULT_RETENTION
    by_interval: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_RETENTION_BY_INTERVAL)
    )

    def for_interval(self, interval: str) -> int:
        return self.by_interval.get(interval, self.default)


# JSON, not msgpack: running sums in 1e-8 units pass 2**64 (a day of a meme coin's volume)
_state_encoder = msgspec.json.Encoder()
_state_decoder = msgspec.json.Decoder(dict[str, Any])


class KlineWriter:
    """Batches kline writes to Redis; call `flush` to send them in one round trip."""

    def __init__(
        self,
        client: redis.Redis,
        keys: KeySpace = KeySpace(),
        retention: RetentionPolicy = RetentionPolicy(),
        dead_letter_maxlen: int = 100_000,
        publish: bool = True,
        journal: int = 0,
    ) -> None:
        self._client = client
        self._keys = keys
        self._retention = retention
        self._dead_letter_maxlen = dead_letter_maxlen
        self._publish = publish
        self._known_symbols: set[str] = set()
        # live: the newest closed klines written per (symbol, interval), to write again if
        # Redis loses them (0: no journal and no sentinel, e.g. replays)
        self._journal_size = journal
        self._journal: dict[tuple[str, str], deque[bytes]] = {}
        self._sentinel = keys.sentinel(secrets.token_hex(6))
        self._sentinel_set = False
        self._rules_started: dict[str, int] = {}  # every claim made, to make again in _repair
        self.repairs = 0  # times Redis was found to have lost data, and repaired
        self._reset()

    def _reset(self) -> None:
        self._pending: dict[tuple[str, str], list[bytes]] = {}
        self._dead: list[DeadLetter] = []
        self._states: dict[str, dict[str, Any]] = {}
        self._new_symbols: set[str] = set()
        self._gaps: list[GapReport] = []
        self._notes: list[QualityNote] = []
        self._mismatches: list[tuple[str, Kline, Kline]] = []
        self._rules_start: dict[str, int] = {}

    def add(self, symbol: str, interval: str, kline: Kline, closed: bool) -> None:
        args = self._pending.get((symbol, interval))
        if args is None:
            if symbol not in self._known_symbols:
                self._new_symbols.add(symbol)
            self._pending[(symbol, interval)] = args = []
        line = b"%d %d %s\n" % (kline.open_ms, closed, kline.member())
        args.append(line)
        if closed and self._journal_size:
            kept = self._journal.get((symbol, interval))
            if kept is None:
                kept = self._journal[(symbol, interval)] = deque(maxlen=self._journal_size)
            kept.append(line)

    def add_many(self, symbol: str, klines: Iterable[tuple[str, Kline]], closed: bool) -> None:
        for interval, kline in klines:
            self.add(symbol, interval, kline, closed)

    def dead_letter(self, letter: DeadLetter) -> None:
        self._dead.append(letter)

    def gap(self, report: GapReport) -> None:
        """A range of trades known missing: the klines over [from_ms, to_ms] are incomplete."""
        self._gaps.append(report)

    def note(self, note: QualityNote) -> None:
        """Something an operator must know about a symbol's klines (data-quality stream)."""
        self._notes.append(note)

    def mismatch(self, symbol: str, ours: Kline, theirs: Kline) -> None:
        """A closed kline that differs from Binance's own: both kept for inspection."""
        self._mismatches.append((symbol, ours, theirs))

    def save_state(self, symbol: str, state: dict[str, Any]) -> None:
        self._states[symbol] = state

    def claim_rules_start(self, symbol: str, interval: str, open_ms: int) -> None:
        """The rules of (symbol, interval) begin at the kline opening at open_ms, unless an
        earlier start is recorded (see flows.signals.step.RulesSince): written in the same
        transaction as that kline, so no kline can be stored before its rules' start is."""
        pair = f"{symbol} {interval}"
        if pair in self._rules_started:
            return  # claimed by this writer already (a claim is never moved)
        self._rules_start[pair] = self._rules_started[pair] = open_ms

    @property
    def pending(self) -> bool:
        return bool(
            self._pending
            or self._dead
            or self._states
            or self._gaps
            or self._notes
            or self._mismatches
            or self._rules_start
        )

    def flush(self) -> None:
        """Send what waits in one MULTI/EXEC; on an error nothing is lost (it is all sent
        again by the next call)."""
        if not self.pending:
            return
        pipe = self._client.pipeline(transaction=True)
        check = self._journal_size > 0 and self._sentinel_set
        if check:
            pipe.exists(self._sentinel)
        self._fill(pipe, self._pending)
        if self._journal_size and not self._sentinel_set:
            pipe.set(self._sentinel, 1)
        results = pipe.execute()
        self._known_symbols |= self._new_symbols
        self._sentinel_set = self._journal_size > 0
        self._reset()
        if check and results and results[0] == 0:
            self._repair()

    def _repair(self) -> None:
        """Redis lost data: write again every closed kline of the journal, and say from when
        older ones may be missing."""
        self.repairs += 1
        oldest = min(
            (int(kept[0].split(b" ", 1)[0]) for kept in self._journal.values() if kept),
            default=-1,
        )
        log.error("Redis lost data it had acknowledged: writing again the %d newest closed "
                  "klines of each symbol and interval; older ones may be missing",
                  self._journal_size)  # fmt: skip
        self._notes.append(
            QualityNote(
                "*",
                "store_lost",
                f"Redis lost acknowledged writes; the newest "
                f"{self._journal_size} closed klines of each key were written again; "
                "older ones may be missing",
                "",
                oldest,
            )
        )
        pipe = self._client.pipeline(transaction=True)
        self._fill(pipe, {k: list(v) for k, v in self._journal.items()})
        symbols = {s for s, _ in self._journal}
        if symbols:
            pipe.sadd(self._keys.symbols, *symbols)
        for pair, open_ms in self._rules_started.items():  # lost with the rest
            pipe.hsetnx(self._keys.rules_since, pair, open_ms)
        pipe.set(self._sentinel, 1)
        pipe.execute()
        self._reset()

    def _fill(self, pipe: Any, pending: Mapping[tuple[str, str], list[bytes]]) -> None:
        keys = self._keys
        channel = keys.closed_channel if self._publish else ""
        blob: list[bytes] = []
        groups = 0
        if pending:
            pipe.script_load(_UPSERT_LUA)
        for (symbol, interval), lines in pending.items():
            zset, last = keys.klines(symbol, interval), keys.last_closed(symbol, interval)
            keep = self._retention.for_interval(interval)
            blob.append(f"#{zset} {last} {keep} {symbol} {interval}\n".encode())
            blob.extend(lines)
            groups += 1
            if groups == _GROUPS_PER_CALL:
                pipe.evalsha(_UPSERT_SHA, 0, channel, b"".join(blob))
                blob, groups = [], 0
        if blob:
            pipe.evalsha(_UPSERT_SHA, 0, channel, b"".join(blob))
        if self._new_symbols:
            pipe.sadd(keys.symbols, *self._new_symbols)
        for letter in self._dead:
            pipe.xadd(
                keys.dead_letters,
                letter.fields(),
                maxlen=self._dead_letter_maxlen,
                approximate=True,
            )
        for g in self._gaps:
            pipe.xadd(
                keys.data_quality,
                g.fields(),
                maxlen=self._dead_letter_maxlen,
                approximate=True,
            )
            pipe.zadd(
                keys.gaps(g.symbol),
                {g.span(): g.from_ms},
            )
        for note in self._notes:
            pipe.xadd(
                keys.data_quality,
                note.fields(),
                maxlen=self._dead_letter_maxlen,
                approximate=True,
            )
        for symbol, ours, theirs in self._mismatches:
            fields = {"symbol": symbol, "ours": ours.member(), "binance": theirs.member()}
            pipe.xadd(keys.reconcile, fields, maxlen=self._dead_letter_maxlen, approximate=True)
        for symbol, state in self._states.items():
            pipe.set(keys.replay_state(symbol), _state_encoder.encode(state))
        for pair, open_ms in self._rules_start.items():
            pipe.hsetnx(keys.rules_since, pair, open_ms)


def load_replay_states(
    client: redis.Redis, keys: KeySpace = KeySpace()
) -> dict[str, dict[str, Any]]:
    """The kline builder state each symbol had at the end of the last replay."""
    states: dict[str, dict[str, Any]] = {}
    prefix_len = len(keys.replay_state(""))
    names = list(client.scan_iter(match=keys.replay_state_pattern, count=1000))
    if not names:
        return states
    blobs: list[bytes | None] = client.mget(names)  # type: ignore[assignment]  # sync client
    for name, blob in zip(names, blobs, strict=True):
        if blob is not None:
            key = name.decode() if isinstance(name, bytes) else str(name)
            states[key[prefix_len:]] = _state_decoder.decode(blob)
    return states


def clear_replay_states(client: redis.Redis, keys: KeySpace = KeySpace()) -> int:
    names = list(client.scan_iter(match=keys.replay_state_pattern, count=1000))
    return int(client.delete(*names)) if names else 0
