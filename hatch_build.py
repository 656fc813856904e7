"""Build step of the wheel (and of `pip install -e .`): compiles flows/native/*.c into one
library (the dump line parser, the recorded frame parser).

The library is a plain C shared object loaded through ctypes (no Python headers, no ABI of
one Python version), built with the compiler Python itself was built with (sysconfig's CC)
or `cc`. Without a compiler the install still succeeds, pure Python, and the columnar reader
parses dumps with pyarrow instead (flows/native/__init__.py); the build says so on stderr.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCES = (Path("flows/native/dump_lines.c"), Path("flows/native/frame_lines.c"))
LIBRARY = Path("flows/native/libklineflow.so.1")


def _compilers() -> list[list[str]]:
    """The compilers to try, in order: $CC, the one Python was built with (its name may only
    exist on the machine that built Python), then the usual names."""
    named = [os.environ.get("CC", ""), sysconfig.get_config_var("CC") or "", "cc", "gcc", "clang"]
    out: list[list[str]] = []
    for name in named:
        words = shlex.split(name)
        if words and words not in out:
            out.append(words)
    return out


def compile_library(root: Path) -> Path | None:
    """root/LIBRARY built from root/SOURCES; None (and a line on stderr) when it cannot be."""
    target = root / LIBRARY
    sources = [str(root / s) for s in SOURCES]
    failures = []
    for compiler in _compilers():
        command = [*compiler, "-O2", "-shared", "-fPIC", "-o", str(target), *sources]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            failures.append(f"{compiler[0]}: {detail.strip()[:200]}")
            continue
        return target
    tried = "; ".join(failures)
    print(f"klineflow: the native parsers were not built ({tried}); dumps will be parsed "
          "with pyarrow, recordings line by line", file=sys.stderr)  # fmt: skip
    return None


class NativeParserHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        built = compile_library(Path(self.root))
        if built is None:
            return
        # an editable install loads it from the checkout, where it was just written
        if version != "editable":
            build_data["force_include"][str(built)] = str(LIBRARY)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
