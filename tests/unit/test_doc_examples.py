"""Examples in docstrings and in the README run, and say what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import flows

REPO = Path(__file__).resolve().parents[2]
PURE_MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(flows.__path__, "flows.")
    if not m.name.startswith(("flows.cli", "flows.dataflows", "flows.sinks", "flows.api"))
)


@pytest.mark.parametrize("name", PURE_MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_some_modules_carry_examples() -> None:
    attempted = sum(doctest.testmod(importlib.import_module(n)).attempted for n in PURE_MODULES)
    assert attempted >= 10


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # our own README example
