"""No emoji in the dashboard: Debian's chromium has no emoji font and draws them as empty
boxes. Icons are Streamlit's Material icons (drawn with the font Streamlit ships) or, for the
browser tab, an image file of ours."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import redis
from google.protobuf import text_format  # type: ignore[import-untyped]  # no stubs
from streamlit.testing.v1 import AppTest

from flows.app.health import FeedState, FlowHeartbeat
from flows.domain.clock import SYSTEM_CLOCK
from tests.dashboard.conftest import Filled, open_page

REPO = Path(__file__).resolve().parents[2]
# pictographs, dingbats, symbols and the arrows that have an emoji form (the plain arrows,
# like the runs list's "->" arrow, are in every text font), the emoji variation selector and
# joiner, regional indicators (flags), keycaps
EMOJI = re.compile(
    "[\u2194-\u2199\u21a9\u21aa\u2300-\u23ff\u2460-\u27bf\u2900-\u297f\u2b00-\u2bff"
    "\u3030\u303d\u3297\u3299\ufe0f\u200d\u20e3\U0001f000-\U0001faff]"
)
# every source file of the dashboard
CHECKED = sorted(str(p.relative_to(REPO)) for p in (REPO / "dashboard").rglob("*")
                 if p.suffix in (".py", ".html", ".js", ".md"))  # fmt: skip


def test_the_pattern_finds_the_emoji_that_were_there() -> None:
    for emoji in ["📈", "🔔", "⚠️", "✅", "🇩🇪"]:
        assert EMOJI.search(emoji), emoji
    assert not EMOJI.search("Latest: Ana up bars · XRPETH · 1m — 24h change % 10:00 → 11:00")


def test_no_emoji_in_the_source_of_these_pages() -> None:
    found = [
        (path, n, line.strip())
        for path in CHECKED
        for n, line in enumerate((REPO / path).read_text().splitlines(), 1)
        if EMOJI.search(line)
    ]
    assert not found


def test_the_page_icon_is_an_image_file_of_the_dashboard() -> None:
    source = (REPO / "dashboard/app.py").read_text()
    assert 'page_icon=str(HERE / "favicon.svg")' in source
    assert (REPO / "dashboard/favicon.svg").read_text().lstrip().startswith("<svg")


def rendered_text(at: AppTest) -> str:
    """Every element and block of the page as protobuf text (labels, values, icons)."""
    parts: list[str] = []

    def walk(node: Any) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            parts.append(text_format.MessageToString(proto, as_utf8=True))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def test_no_emoji_in_what_status_screener_and_signals_render(filled: Filled, app_env: None) -> None:
    now = SYSTEM_CLOCK.now_ms()
    beat = FlowHeartbeat(ts_ms=now, started_ms=now - 5_000, state="running",
                         feeds=(FeedState("0", "connected", 3, 0.2),))  # fmt: skip
    redis.Redis.from_url(filled.redis_url).hset(
        filled.keys.heartbeat,
        mapping=beat.encode(),  # type: ignore[arg-type]
    )
    pages = [
        open_page("views/status.py", filled.ana, "ana"),
        open_page("views/screener.py"),
    ]
    signals = open_page("views/signals.py", filled.ana, "ana")
    signals.session_state["signals_table"] = {"selection": {"rows": [0], "columns": []}}
    signals.run()  # a selected signal: its link to Market has an icon
    links = signals.main.get("page_link")
    assert [x.proto.icon for x in links] == [":material/candlestick_chart:"]
    assert signals.expander[0].proto.icon == ":material/filter_list:"
    for at in [*pages, signals]:
        text = rendered_text(at)
        assert len(text) > 1000  # the page was drawn
        assert not EMOJI.findall(text)
