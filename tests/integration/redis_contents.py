"""What a Redis holds, read key by key: to show that data is the same before and after."""

from __future__ import annotations

import redis


def contents(client: redis.Redis, pattern: str = "*") -> dict[bytes, tuple[bytes, object, int]]:
    """Every key matching `pattern`: (type, value, expiry). Values are read per type, not with
    DUMP, so servers of different versions (RDB formats) compare equal when the data is. The
    expiry is -1 for a key that never expires and 1 for one that does: its remaining
    seconds count down between two reads (a write shows in the value)."""
    out: dict[bytes, tuple[bytes, object, int]] = {}
    for key in sorted(client.scan_iter(match=pattern, count=1000)):
        kind: bytes = client.type(key)  # type: ignore[assignment]
        value: object
        if kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"string":
            value = client.get(key)
        elif kind == b"set":
            value = sorted(client.smembers(key))  # type: ignore[arg-type]
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"stream":
            value = client.xrange(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        else:
            raise AssertionError(f"{key!r}: a {kind!r}, which no klineflow code writes")
        ttl = int(client.ttl(key))  # type: ignore[arg-type]
        out[key] = (kind, value, 1 if ttl > 0 else ttl)
    return out
