"""Layered and concatenated Vega-Lite views put together as plain dicts.

Altair's `LayerChart` and `concat` deep-copy every sub-chart (to lift and merge their
parameters) at each level of nesting: for the Market chart's twenty-odd layers in three
views that was most of a second per new layout. Here each unit chart is turned into its
dict once, and layers and views are assembled around those dicts, giving the spec Altair
would (the chart's parameters are added by `charts.with_params`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt

Part = alt.Chart | dict[str, Any]
_DROPPED = ("$schema", "config", "datasets")


def unit(chart: alt.Chart) -> dict[str, Any]:
    """One unit chart's spec, without what only a top-level spec carries (Altair gives a
    chart without data an empty dataset: dropped, so that it reads its parent's data)."""
    spec: dict[str, Any] = chart.to_dict(validate=False)
    for key in _DROPPED:
        spec.pop(key, None)
    if spec.get("data") == {"name": "empty"}:
        del spec["data"]
    return spec


def _as_spec(part: Part) -> dict[str, Any]:
    return part if isinstance(part, dict) else unit(part)


def layer(parts: Sequence[Part], resolve: dict[str, str] | None = None,
          **props: Any) -> dict[str, Any]:  # fmt: skip
    """A layer of these parts; `resolve` as a layer's scale resolution (channel: shared or
    independent); `props` (name, height, width, title) on the layer."""
    spec: dict[str, Any] = {"layer": [_as_spec(p) for p in parts], **props}
    if resolve:
        spec["resolve"] = {"scale": dict(resolve)}
    return spec


def _suffixed(spec: dict[str, Any], suffix: str) -> None:
    """Every named unit of a view gets the view's suffix: names are unique in the chart
    (the parameters name the views they belong to)."""
    if "mark" in spec and isinstance(spec.get("name"), str):
        spec["name"] = spec["name"] + suffix
    for child in spec.get("layer", []):
        _suffixed(child, suffix)


def column(views: Sequence[dict[str, Any]], **props: Any) -> dict[str, Any]:
    """Views one under the other (a one-column concat), units named `<name>_<view index>`."""
    for i, view in enumerate(views):
        _suffixed(view, f"_{i}")
    return {"concat": list(views), "columns": 1, **props, "$schema": alt.SCHEMA_URL}
