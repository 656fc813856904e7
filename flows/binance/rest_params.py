"""Binance's REST parameter rules and error answers, shared by every server we run that
speaks its API (the klines endpoint and the exchange simulator).

>>> ApiError(-1121, "Invalid symbol.").body()
{'code': -1121, 'msg': 'Invalid symbol.'}
"""

from __future__ import annotations

import re
from typing import Final

from starlette.requests import Request

NUMBER_RE: Final = re.compile(r"[0-9]{1,20}")
SYMBOL_RE: Final = re.compile(r"[A-Z0-9\-_.]{1,20}")  # what Binance accepts as a symbol


class ApiError(Exception):
    """An answer Binance would give: HTTP `status` with `{"code": .., "msg": ..}`."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status

    def body(self) -> dict[str, int | str]:
        return {"code": self.code, "msg": self.msg}


def mandatory(request: Request, name: str) -> str:
    """A parameter that must be there (-1102 otherwise)."""
    value = request.query_params.get(name, "")
    if not value:
        raise ApiError(
            -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
        )
    return value


def optional_number(request: Request, name: str) -> int | None:
    """A whole number parameter, or None when absent (-1100 for anything but digits)."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if not NUMBER_RE.fullmatch(value):
        raise ApiError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(value)
