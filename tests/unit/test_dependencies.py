"""Every third-party module that flows/ and dashboard/ import is declared in pyproject.toml's
dependencies (directly, or through an extra of a declared one such as psycopg[pool]): an
import that only works because something else pulled it in breaks with that something."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib

from tests.conftest import REPO

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    """Declared distributions, and those that the declared extras bring."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names: set[str] = set()
    for requirement in project["dependencies"]:
        match = _NAME.match(requirement)
        assert match is not None, requirement
        name, extras = match.group(1), match.group(2)
        names.add(_canonical(name))
        wanted = {e.strip() for e in (extras or "").split(",") if e.strip()}
        for sub in (md.requires(name) or []) if wanted else []:
            extra = _EXTRA.search(sub)
            if extra is not None and extra.group(1) in wanted:
                sub_name = _NAME.match(sub)
                assert sub_name is not None, sub
                names.add(_canonical(sub_name.group(1)))
    return names


def _imported() -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it."""
    found: dict[str, set[str]] = {}
    for root in ("flows", "dashboard"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in {"flows", "dashboard"}:
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    declared = _declared()
    providers = md.packages_distributions()
    undeclared = {}
    for module, files in _imported().items():
        dists = {_canonical(d) for d in providers.get(module, [])}
        assert dists, f"{module} (imported by {sorted(files)}) is not installed"
        if not dists & declared:
            undeclared[module] = (sorted(dists), sorted(files))
    assert undeclared == {}, "imported but not in [project].dependencies"
