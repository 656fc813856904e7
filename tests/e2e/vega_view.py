"""Reading a chart's state in the browser: the Vega view Streamlit embedded, its scales,
signals and data, and the marks it drew (from its scene graph, so it works whether
Streamlit chose the SVG or the canvas renderer).

Streamlit does not expose the view; its React component keeps it in a hook (a ref), which
`FIND_VIEW` reaches through the React fiber of the chart's element.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

FIND_VIEW = """() => {
  const el = document.querySelector('.vega-embed');
  if (!el) return null;
  const isView = (v) => v && typeof v === 'object' && typeof v.scale === 'function'
    && typeof v.signal === 'function' && typeof v.scenegraph === 'function';
  for (let node = el; node; node = node.parentElement) {
    const key = Object.keys(node).find((k) => k.startsWith('__reactFiber$'));
    if (!key) continue;
    for (let fiber = node[key]; fiber; fiber = fiber.return) {
      for (let hook = fiber.memoizedState; hook && typeof hook === 'object'; hook = hook.next) {
        const held = hook.memoizedState;
        if (isView(held)) return held;
        if (held && typeof held === 'object' && isView(held.current)) return held.current;
      }
    }
  }
  return null;
}"""

# every mark of the scene graph with the view group it is in, its items as plain numbers
MARKS = """(view, wanted) => {
  const out = [];
  const item = (i) => ({x: i.x, y: i.y, x2: i.x2, y2: i.y2, width: i.width, height: i.height,
    text: i.text === undefined ? null : String(i.text), fill: i.fill || null,
    stroke: i.stroke || null, opacity: i.opacity === undefined ? 1 : i.opacity,
    t: i.datum && i.datum.t !== undefined ? +i.datum.t : null,
    value: i.datum && i.datum.value !== undefined ? +i.datum.value : null});
  const walk = (mark, group) => {
    if (!mark) return;
    const inside = mark.marktype === 'group' && mark.name ? mark.name : group;
    const name = mark.name || '';
    const asked = (wanted.prefix && name.startsWith(wanted.prefix))
      || (wanted.role && mark.role === wanted.role);
    if (asked)
      out.push({name, role: mark.role, view: group, items: (mark.items || []).map(item)});
    for (const i of mark.items || []) for (const child of i.items || []) walk(child, inside);
  };
  walk(view.scenegraph().root, null);
  return out;
}"""

GROUP = """(view, name) => {
  let found = null;
  const walk = (mark) => {
    if (!mark || found) return;
    if (mark.marktype === 'group' && mark.name === name) { found = mark.items[0]; return; }
    for (const i of mark.items || []) for (const child of i.items || []) walk(child);
  };
  walk(view.scenegraph().root);
  const drawn = view.container().querySelector('canvas') || view.container().querySelector('svg');
  const box = drawn.getBoundingClientRect();
  const [ox, oy] = view.origin();
  return {left: box.left + ox + found.x, top: box.top + oy + found.y,
          width: found.width, height: found.height};
}"""


def in_view(body: str) -> str:
    """A page function `(arg) => ...` whose `body` has the chart's `view` at hand."""
    return f"(arg) => {{ const view = ({FIND_VIEW})(); if (!view) return null; {body} }}"


def wait_for_view(page: Page) -> None:
    page.wait_for_function(in_view("return view.scale('x').domain().length === 2;"))


def ask(page: Page, expression: str, arg: Any = None) -> Any:
    """The value of a JavaScript `expression` over `view` (and `arg`)."""
    return page.evaluate(in_view(f"return {expression};"), arg)


def marks(page: Page, prefix: str | None = None, role: str | None = None) -> list[dict[str, Any]]:
    """The drawn marks whose name starts with `prefix` (or of `role`), with their items."""
    found: list[dict[str, Any]] = ask(
        page, f"({MARKS})(view, arg)", {"prefix": prefix, "role": role}
    )
    return found


def items(page: Page, prefix: str) -> list[dict[str, Any]]:
    return [i for m in marks(page, prefix) for i in m["items"]]


def group_box(page: Page, name: str) -> dict[str, float]:
    """Where a view (the group named `name`, e.g. ``price_group``) is on the page."""
    box: dict[str, float] = ask(page, f"({GROUP})(view, arg)", name)
    return box


def x_pixel(page: Page, t: int) -> float:
    return float(ask(page, "view.scale('x')(arg)", t))


def domain(page: Page, scale: str) -> list[float]:
    return [float(v) for v in ask(page, f"view.scale('{scale}').domain().map(Number)")]
