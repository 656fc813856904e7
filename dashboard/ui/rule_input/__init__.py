"""A rule box that is checked as it is typed, and the check it shows.

Streamlit's own text area hands its text to the script only when it loses focus (or on
Ctrl+Enter), so a mistake shows only after the user left the box. `rule_box` is a small
bidirectional component instead: a plain textarea in an iframe (``frontend/index.html``,
no build step) that speaks Streamlit's component messages. It sends its text about 350 ms
after the last keystroke (at once on Ctrl+Enter or when it loses focus); the script checks
it with the application's own check (`check_rule`) and shows the problem right under the
box, while the box keeps its focus and its caret: the iframe is never rebuilt for a new
check (the key keeps its identity), and it takes the text given to it only when it starts.

`check_rule` is a plain function (no Streamlit), so the check is testable on its own; the
page's state is testable too, since the component's value is its key's session state.
`plain=True` draws a Streamlit text area instead (checked when it loses focus), for where
the component cannot run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from dashboard.ui.common import md_escape
from flows.app.errors import BadInput, BadRule
from flows.app.traders import validate
from flows.rules.errors import RuleError, line_column
from flows.signals.book import TraderRow

FRONTEND = Path(__file__).resolve().parent / "frontend"
DEBOUNCE_MS = 350  # the text is sent this long after the last keystroke
PLACEHOLDER = "rsi(14) < 30 and close > ema(50)"


@dataclass(frozen=True)
class RuleProblem:
    """What is wrong with a rule, and where: 1-based line and column, the caret drawing."""

    message: str
    position: int  # 0-based offset in the text (the checker's)
    line: int
    column: int
    where: str  # "column 7", or "line 2, column 3" in a rule of several lines
    caret: str  # the rule with a caret under the character (RuleError.caret)


def problem_of(text: str, error: RuleError) -> RuleProblem:
    line, column = line_column(text, error.position)
    return RuleProblem(
        error.message, error.position, line, column, error.place(text), error.caret(text)
    )


def check_rule(
    expression: str, interval: str, intervals: Sequence[str] | None = None
) -> RuleProblem | None:
    """The application's check of a rule (`flows.app.traders.validate`, as the command line
    makes it): None when the flow can run it on `interval` (given the flow's `intervals`),
    else the problem. An empty rule is no problem here: it just cannot be saved."""
    if not expression.strip():
        return None
    try:
        validate(TraderRow(0, "draft", expression, interval), intervals)
    except BadRule as exc:
        return problem_of(expression, exc.error)
    except BadInput as exc:  # the interval itself: not the rule's fault, shown at its start
        return problem_of(expression, RuleError(0, exc.message))
    return None


def _component() -> Any:
    # declared at each use, inside the script run: that is where Streamlit registers the
    # folder it serves the frontend from (declaring again is cheap and changes nothing)
    return components.declare_component("rule_box", path=str(FRONTEND))


def rule_editor(
    label: str,
    *,
    key: str,
    start: str,
    interval: str,
    intervals: Sequence[str] | None = None,
    plain: bool = False,
    placeholder: str = PLACEHOLDER,
) -> tuple[str, RuleProblem | None]:
    """The rule box (starting with `start`), its text checked for `interval`, and the
    verdict right under it: the error with its line, column and caret, or that it compiles.
    Returns (the text as typed so far, its problem or None)."""
    widget = f"{key}_plain" if plain else key
    sent = st.session_state.get(widget)
    text = start if sent is None else str(sent)
    problem = check_rule(text, interval, intervals)
    if plain:
        text = str(st.text_area(label, value=start, key=widget, placeholder=placeholder))
        problem = check_rule(text, interval, intervals)
    else:
        _component()(
            key=widget,
            default=None,
            label=label,
            initial=start,
            placeholder=placeholder,
            checked=text,
            invalid=problem is not None,
            where=problem.where if problem else "",
            debounce_ms=DEBOUNCE_MS,
        )
    if problem is not None:
        show_problem(problem)
    elif text.strip():
        st.success("The rule compiles.", icon=":material/check_circle:")
    else:
        st.caption("Type a rule, e.g. `rsi(14) < 30 and close > ema(50)`.")
    return text, problem


def show_problem(problem: RuleProblem) -> None:
    """The problem, right under the box: the message with its line and column, and the rule
    with a caret under the offending character."""
    st.error(
        f"Rule error at {problem.where}: {md_escape(problem.message)}", icon=":material/error:"
    )
    st.code(problem.caret, language=None)
