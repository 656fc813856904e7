"""The JSON control messages of a stream connection (BINANCE.md A1, live subscribing).

`handle_control` applies one incoming text message to a connection's `Subscriptions` and
returns the answer to send. Answers are ``{"result":...,"id":...}``; errors are
``{"code":N,"msg":"..."}`` with ``"id"`` added when the request's id could be read:

- 0: unknown property (SET_PROPERTY / GET_PROPERTY of anything but ``combined``)
- 1: the property value is not a boolean
- 2: invalid request: missing or badly typed ``id``, missing or unknown ``method``, badly
  typed ``params``, too many parameters, or too many streams (over the 1024 limit: Binance
  does not document its answer there, code 2 is our choice)
- 3: the message is not JSON

The ``msg`` texts follow Binance's wording where it is known.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

_ID_TEXT: Final = re.compile(r"[A-Za-z0-9_-]{1,36}")
_INT64: Final = 1 << 63
METHODS: Final = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")

RequestId = int | str | None


@dataclass(slots=True)
class Subscriptions:
    """A connection's streams (in subscription order) and its ``combined`` property."""

    combined: bool
    streams: dict[str, None] = field(default_factory=dict)
    max_streams: int = 1024


@dataclass(frozen=True, slots=True)
class ControlAnswer:
    text: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class _Invalid(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _dump(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _error(code: int, msg: str, request_id: RequestId, id_known: bool) -> str:
    body: dict[str, Any] = {"code": code, "msg": msg}
    if id_known:
        body["id"] = request_id
    return _dump(body)


def _request_id(message: dict[str, Any]) -> RequestId:
    if "id" not in message:
        raise _Invalid(2, "Invalid request: missing field `id`")
    value = message["id"]
    if value is None:
        return None
    if isinstance(value, (bool, float)):
        raise _Invalid(2, "Invalid request: request ID must be an unsigned integer")
    if isinstance(value, int) and -_INT64 <= value < _INT64:
        return value
    if isinstance(value, str) and _ID_TEXT.fullmatch(value):
        return value
    raise _Invalid(2, "Invalid request: request ID must be an unsigned integer")


def _params(message: dict[str, Any], required: bool) -> list[Any]:
    if "params" not in message or message["params"] is None:
        if required:
            raise _Invalid(2, "Invalid request: missing field `params`")
        return []
    params = message["params"]
    if not isinstance(params, list):
        raise _Invalid(2, "Invalid request: invalid type for `params`, expected a sequence")
    return params


def _stream_names(params: list[Any]) -> list[str]:
    if not all(isinstance(p, str) for p in params):
        raise _Invalid(2, "Invalid request: stream names must be strings")
    return params


def _property(params: list[Any], most: int) -> str:
    if len(params) > most:
        raise _Invalid(2, "Invalid request: too many parameters")
    if not params or not isinstance(params[0], str):
        raise _Invalid(2, "Invalid request: property name must be a string")
    if params[0] != "combined":
        raise _Invalid(0, "Unknown property")
    return params[0]


def handle_control(text: str, subs: Subscriptions) -> ControlAnswer:
    """Apply one control message to `subs`; the answer to send back."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError) as e:
        return ControlAnswer(_error(3, f"Invalid JSON: {e}", None, False))
    if not isinstance(message, dict):
        return ControlAnswer(_error(2, "Invalid request: expected a JSON object", None, False))
    try:
        request_id = _request_id(message)
    except _Invalid as e:
        return ControlAnswer(_error(e.code, e.msg, None, False))
    try:
        return _dispatch(message, request_id, subs)
    except _Invalid as e:
        return ControlAnswer(_error(e.code, e.msg, request_id, True))


def _dispatch(message: dict[str, Any], request_id: RequestId, subs: Subscriptions) -> ControlAnswer:
    if "method" not in message:
        raise _Invalid(2, "Invalid request: missing field `method`")
    method = message["method"]
    if method not in METHODS:
        raise _Invalid(
            2,
            f"Invalid request: unknown variant `{method}`, expected one of "
            + ", ".join(f"`{m}`" for m in METHODS),
        )
    ok = _dump({"result": None, "id": request_id})
    if method == "SUBSCRIBE":
        names = _stream_names(_params(message, True))
        new = tuple(dict.fromkeys(n for n in names if n not in subs.streams))
        if len(subs.streams) + len(new) > subs.max_streams:
            raise _Invalid(
                2, f"Invalid request: too many streams (at most {subs.max_streams} a connection)"
            )
        subs.streams.update(dict.fromkeys(new))
        return ControlAnswer(ok, added=new)
    if method == "UNSUBSCRIBE":
        names = _stream_names(_params(message, True))
        gone = tuple(dict.fromkeys(n for n in names if n in subs.streams))
        for name in gone:
            del subs.streams[name]
        return ControlAnswer(ok, removed=gone)
    if method == "LIST_SUBSCRIPTIONS":
        if _params(message, False):
            raise _Invalid(2, "Invalid request: too many parameters")
        return ControlAnswer(_dump({"result": list(subs.streams), "id": request_id}))
    params = _params(message, True)
    if method == "SET_PROPERTY":
        _property(params, 2)
        if len(params) < 2 or not isinstance(params[1], bool):
            raise _Invalid(1, "Invalid value type: expected Boolean")
        subs.combined = params[1]
        return ControlAnswer(ok)
    _property(params, 1)  # GET_PROPERTY
    return ControlAnswer(_dump({"result": subs.combined, "id": request_id}))
