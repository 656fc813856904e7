"""Widgets whose values live in the URL's query parameters, so that a reload or a shared link
opens the same view.

A widget keeps its own state (a fixed `key`, no `index`/`value` computed per run: a widget's
identity must not change between runs, or Streamlit makes a new one and the browser's pick is
lost). The URL follows the widgets: `publish`, after them, writes what they hold. Before them,
`adopt` sets them from the URL only when the URL is not the one this page last wrote: the
first visit, a link, back/forward, an address typed by hand. A bare address (the sidebar's
link) keeps the values this browser session last had.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st


@dataclass(frozen=True)
class UrlField:
    """One widget's value in one query parameter."""

    key: str  # the widget's key in the session state
    param: str  # its query parameter
    default: Any
    parse: Callable[[str], Any]  # raises ValueError (or KeyError) for text it cannot take
    text: Callable[[Any], str] = str
    always: bool = False  # written even when it holds the default

    def from_text(self, raw: str | None) -> Any:
        if raw is None or raw == "":
            return self.default
        try:
            return self.parse(raw)
        except (ValueError, KeyError):
            return self.default

    def valid(self, value: Any) -> bool:
        try:
            return bool(self.parse(self.text(value)) == value)
        except (ValueError, KeyError, TypeError):
            return False

    def url_text(self, value: Any) -> str | None:
        return self.text(value) if self.always or value != self.default else None


def _url(fields: Sequence[UrlField]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for f in fields:
        value = st.query_params.get(f.param)
        found[f.param] = value if value else None
    return found


def adopt(fields: Sequence[UrlField], memory: str) -> None:
    """Call before the widgets: set them from the URL when it changed from outside (see the
    module's text); `memory` is the session-state key of what this page last wrote."""
    seen: dict[str, str | None] | None = st.session_state.get(memory)
    now = _url(fields)
    if seen is not None and not any(now.values()):
        now = seen  # a bare address: what this session had
    from_outside = now != seen
    for f in fields:
        if from_outside or f.key not in st.session_state or not f.valid(st.session_state[f.key]):
            st.session_state[f.key] = f.from_text(now[f.param])


def publish(fields: Sequence[UrlField], memory: str) -> None:
    """Call after the widgets: write their values to the URL (a default one is left out
    unless the field is `always` written)."""
    now = _url(fields)
    written: dict[str, str | None] = {}
    for f in fields:
        text = f.url_text(st.session_state[f.key])
        written[f.param] = text
        if now[f.param] != text:
            if text is None:
                del st.query_params[f.param]
            else:
                st.query_params[f.param] = text
    st.session_state[memory] = written


def choice(options: Sequence[str]) -> Callable[[str], str]:
    """A parser that takes one of `options`."""

    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"{text!r} is not one of {', '.join(options)}")
        return text

    return parse


def number(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], Any]:
    """A parser of a number (`int` or `float`) from `low` to `high`."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise ValueError(f"{text} is not within {low} .. {high}")
        return value

    return parse


def codes(labels: dict[str, str]) -> tuple[Callable[[str], list[str]], Callable[[Any], str]]:
    """Parser and printer of a list of labels written as short codes: `ema,bb`
    (`labels` maps code to label)."""
    by_label = {label: code for code, label in labels.items()}

    def parse(text: str) -> list[str]:
        return list(dict.fromkeys(labels[c] for c in text.split(",") if c))

    def print_(values: Any) -> str:
        return ",".join(by_label[v] for v in values)

    return parse, print_
