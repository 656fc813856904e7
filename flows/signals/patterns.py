"""Which symbols a trader watches by pattern: globs, never regular expressions.

A pattern is a glob over symbol names: ``*`` any run of characters, ``?`` one character,
letters and digits themselves (``*USDT``, ``BTC*``, ``ETH?USD*``); case does not matter
and it must match the whole symbol. Matching is a two-pointer scan that backs up only to
the last ``*`` seen, so it costs at most len(pattern) x len(symbol) steps, whatever the
pattern: no text a user types can make it slow (a regular expression such as
``((((.*)*)*)*)*Z`` once stopped every kline close for minutes).

Patterns are matched when the book of traders is built or the universe changes
(``flows.signals.book``), never per kline.

Rows saved before patterns were globs hold regular expressions. Those of the simple forms
people wrote (``.*USDT``, ``^BTC.*``, ``ETH.USDT$``) are read as the same glob; any other is
refused with a message telling the owner to write a glob, and the trader watches nothing.
"""

from __future__ import annotations

import re

MAX_PATTERN = 64
_GLOB = re.compile(r"[A-Z0-9*?]+")
_LEGACY = re.compile(r"\^?(?:[A-Za-z0-9]|\.\*|\.)+\$?")


class PatternError(ValueError):
    """A symbols pattern that is not a glob."""


def check_glob(text: str) -> str:
    """The pattern, upper-cased; PatternError with what is wrong and what to write."""
    pattern = text.strip().upper()
    if not pattern:
        raise PatternError("the symbols pattern is empty; write a glob like *USDT")
    if len(pattern) > MAX_PATTERN:
        raise PatternError(f"the symbols pattern is longer than {MAX_PATTERN} characters")
    if not _GLOB.fullmatch(pattern):
        bad = next(ch for ch in pattern if not _GLOB.fullmatch(ch))
        raise PatternError(
            f"character {bad!r} is not allowed in a symbols pattern: write a glob of letters, "
            "digits, * (any characters) and ? (one character), like *USDT or BTC*"
        )
    return pattern


def glob_of(text: str) -> str:
    """A stored pattern as a glob: a glob as is, a simple legacy regular expression
    converted; PatternError otherwise."""
    try:
        return check_glob(text)
    except PatternError:
        if len(text) > MAX_PATTERN or not _LEGACY.fullmatch(text):
            raise
    body = text.removeprefix("^").removesuffix("$")
    return check_glob(body.replace(".*", "*").replace(".", "?"))


def glob_match(pattern: str, symbol: str) -> bool:
    """Whether the upper-case glob `pattern` matches all of `symbol`."""
    p = s = 0
    star = -1  # position in the pattern after the last '*'
    resume = 0  # where in the symbol that '*' would take one more character
    np, ns = len(pattern), len(symbol)
    while s < ns:
        if p < np and (pattern[p] == "?" or pattern[p] == symbol[s]):
            p += 1
            s += 1
        elif p < np and pattern[p] == "*":
            star, resume = p + 1, s
            p += 1
        elif star >= 0:
            resume += 1
            p, s = star, resume
        else:
            return False
    while p < np and pattern[p] == "*":
        p += 1
    return p == np
