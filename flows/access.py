"""Redis ACL users, one per component, each held to its keys and the commands its code sends.

| user | keys | may |
|---|---|---|
| flow | every key of KeySpace; the backtest scratch namespaces | read and write |
| api | klines, last closed, symbols | read only (`%R~`), read commands only |
| dashboard | what its pages read (klines, symbols, gaps, streams, heartbeat) | read only |

The readers cannot write at all: their key patterns are read-only (`%R~`, Redis >= 7) and
their commands are read commands (no EVAL/EVALSHA/FCALL/FUNCTION/SCRIPT, no MULTI, no write,
no CONFIG/ACL/DEBUG/FLUSH*). The dashboard's backtests therefore build their klines in a Redis
of their own (flows.backtest.scratch), never in the live one.

Key patterns are derived from `flows.domain.keys.KeySpace` (each key method called with `*`
for its parameters, under the configured namespace), never written out a second time; a test
walks KeySpace so that a new key must be given to someone here. The command lists come from
reading every Redis call of the package and were checked by running the real flow, API and
dashboard code as these users (tests/integration/test_redis_acl.py); SCAN is keyless in Redis,
so it lists key names beyond a user's patterns (names only: reading them is still refused).

Passwords are stored as SHA-256 (`#<hex>`), so the ACL file does not hold them in clear. The
`default` user is switched off: a connection must name its user. A Redis older than 7 cannot
make a key pattern read-only: no file is made for it (`OldRedisError`), since there the readers
could write every key they may read.

>>> print(acl_user("api", "a" * 16, KeySpace("demo")))  # doctest: +ELLIPSIS
user api on #... resetkeys resetchannels %R~demo:klines:*:* ... -@all +ping +zrangebyscore ...
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass

from flows.backtest import SCRATCH_PREFIX
from flows.domain.keys import KeySpace

USERS = ("flow", "api", "dashboard")
READERS = ("api", "dashboard")
MIN_PASSWORD_LENGTH = 16
MIN_REDIS_MAJOR = 7  # `%R~`: a key pattern a user may only read

# KeySpace members that are not keys: the PUBLISH channel, a pattern, the prefix itself
NOT_KEYS = frozenset({"closed_channel", "replay_state_pattern", "namespace"})
# every key the flow writes (KeySpace members): all of them
FLOW_KEYS = frozenset(
    {
        "klines",
        "last_closed",
        "origin",
        "symbols",
        "gaps",
        "dead_letters",
        "data_quality",
        "reconcile",
        "heartbeat",
        "heartbeat_of",
        "replay_state",
        "sentinel",
        "rules_since",
    }
)
API_READS = frozenset({"klines", "last_closed", "symbols"})
# the Market, Screener and Status pages (dashboard/data/market.py)
DASHBOARD_READS = API_READS | {"gaps", "dead_letters", "data_quality", "reconcile", "heartbeat"}

# Commands, by what sends them.
CONNECT = ("ping",)  # health checks (AUTH needs no right)
READ_KLINES = (  # flows.storage.kline_store.KlineStore
    "zrangebyscore", "zrevrangebyscore", "zcard", "get", "smembers", "sismember",
)  # fmt: skip
READ_STATUS = ("zrevrange", "xlen", "xrevrange", "hgetall")  # dashboard/data/market.py
# (the dashboard's pipelines are plain ones, transaction=False: no MULTI)
WRITE_KLINES = (  # flows.storage.redis_klines.KlineWriter: a pipeline of EVALSHA and the rest
    "evalsha", "script|load", "script|exists",  # the upsert, loaded inside each MULTI
    "zrange", "zremrangebyscore", "zadd", "zremrangebyrank", "get", "set", "publish",  # Lua
    "sadd", "xadd", "exists", "multi", "exec", "discard",
)  # fmt: skip
REPLAY_STATE = ("scan", "mget", "del")
RULES_SINCE = (
    "hsetnx",
    "hmget",
)  # flows.signals.step.RulesSince  # where the last replay left each symbol
BACKTEST = ("zrange", "scan", "del")  # a run reads its klines back and drops its namespace
HEARTBEAT = ("multi", "exec", "discard", "del", "hset", "expire", "hgetall")  # MULTI pipeline


@dataclass(frozen=True, slots=True)
class Rights:
    """One user's rights: patterns it may only read, patterns it may write, channels it may
    publish to, and commands."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    channels: tuple[str, ...]
    commands: tuple[str, ...]


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def key_patterns(keys: KeySpace, namespace_is_glob: bool = False) -> dict[str, str]:
    """Every key KeySpace builds, as a glob: {member name: pattern}, parameters as `*` and the
    namespace taken literally (unless it is a glob itself)."""
    if re.search(r"\s", keys.namespace):
        raise ValueError(f"namespace {keys.namespace!r}: no spaces in an ACL key pattern")
    escaped = keys if namespace_is_glob else KeySpace(_glob_escape(keys.namespace))
    out: dict[str, str] = {}
    for name, member in inspect.getmembers(KeySpace):
        if name.startswith("_") or name in NOT_KEYS:
            continue
        if isinstance(member, property):
            out[name] = str(getattr(escaped, name))
        elif inspect.isfunction(member):
            arity = len(inspect.signature(member).parameters) - 1  # without self
            out[name] = str(getattr(escaped, name)(*["*"] * arity))
    return out


_SCRATCH = KeySpace(SCRATCH_PREFIX + "*")  # a glob on purpose: every backtest run's namespace


def _patterns(keys: KeySpace, members: frozenset[str], glob: bool = False) -> tuple[str, ...]:
    found = key_patterns(keys, namespace_is_glob=glob)
    return tuple(found[m] for m in sorted(members))


def _commands(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for group in groups for c in group))


def rights(user: str, keys: KeySpace = KeySpace()) -> Rights:
    """What `user` may do under `keys`' namespace (backtests use namespaces of their own)."""
    scratch = _SCRATCH
    if user == "flow":
        return Rights(
            read=(),
            write=_patterns(keys, FLOW_KEYS) + _patterns(scratch, FLOW_KEYS, glob=True),
            channels=(_glob_escape(keys.closed_channel), scratch.closed_channel),
            commands=_commands(
                CONNECT,
                READ_KLINES,
                WRITE_KLINES,
                REPLAY_STATE,
                HEARTBEAT,
                BACKTEST,
                RULES_SINCE,
            ),
        )
    if user == "api":
        return Rights(_patterns(keys, API_READS), (), (), _commands(CONNECT, READ_KLINES))
    if user == "dashboard":
        return Rights(
            _patterns(keys, DASHBOARD_READS), (), (), _commands(CONNECT, READ_KLINES, READ_STATUS)
        )
    raise ValueError(f"Redis user {user!r} is not one of {', '.join(USERS)}")


def password_hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a Redis password needs at least {MIN_PASSWORD_LENGTH} characters")
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


class OldRedisError(ValueError):
    """The Redis named is older than 7: it cannot hold the readers to reading."""


def check_redis_version(major: int, what: str = "the Redis server") -> None:
    """Refuse a server older than Redis 7 / Valkey 7.2, in one line saying why."""
    if major < MIN_REDIS_MAJOR:
        raise OldRedisError(
            f"{what} is Redis {major}, which cannot make a key read-only for a user (%R~ needs "
            "Redis >= 7 or Valkey >= 7.2): the api and dashboard users could write live "
            "klines there, so no ACL file is made; upgrade the server"
        )


def acl_user(user: str, password: str, keys: KeySpace = KeySpace(), redis_major: int = 7) -> str:
    """One `user ...` line of a Redis ACL file (Redis >= 7)."""
    check_redis_version(redis_major)
    r = rights(user, keys)
    words = ["user", user, "on", "#" + password_hash(password), "resetkeys", "resetchannels"]
    words += ["%R~" + p for p in r.read if p not in r.write]
    words += ["~" + p for p in r.write]
    words += ["&" + c for c in r.channels]
    words += ["-@all", *("+" + c for c in r.commands)]
    return " ".join(words)


DEFAULT_OFF = "user default off resetpass resetkeys resetchannels -@all"


def acl_file(passwords: Mapping[str, str], namespace: str = "", redis_major: int = 7) -> str:
    """The whole ACL file: the default user off, then one line per component (all three)."""
    check_redis_version(redis_major)
    missing = [u for u in USERS if u not in passwords]
    if missing or set(passwords) - set(USERS):
        raise ValueError(f"give a password for each of {', '.join(USERS)} (and no other)")
    if len(set(passwords.values())) < len(USERS):
        raise ValueError("each Redis user needs a password of its own")
    keys = KeySpace(namespace)
    lines = [DEFAULT_OFF, *(acl_user(u, passwords[u], keys, redis_major) for u in USERS)]
    return "\n".join(lines) + "\n"


def redis_major_of(url: str | None) -> tuple[int, str]:
    """(the major version of the Redis at `url`, a note to show or ""), refusing an old one
    (OldRedisError below 7). With no URL, or a server that does not answer (the ACL file is
    often made before the server starts, as in docker-compose.yml), 7 and a note saying the
    file is for Redis >= 7."""
    import redis

    from flows.services import major_version, server_version

    if url is None:
        return MIN_REDIS_MAJOR, ""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        version = server_version(client)
    except (redis.RedisError, OSError) as e:
        return MIN_REDIS_MAJOR, (
            f"KLINEFLOW_REDIS_URL did not tell its version ({type(e).__name__}); the file is "
            "for Redis >= 7 or Valkey >= 7.2"
        )
    finally:
        client.close()
    check_redis_version(major_version(version), f"the Redis at KLINEFLOW_REDIS_URL ({version})")
    return major_version(version), ""
