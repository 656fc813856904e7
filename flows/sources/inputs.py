"""The files a run reads: a folder stands for the trade archive's Parquet files under it."""

from __future__ import annotations

from pathlib import Path


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Inputs as files: a folder (the archive, or any part of it) becomes its Parquet files
    in (symbol, day, name) order; FileNotFoundError for a folder without any."""
    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        found = sorted(p.rglob("*.parquet"), key=lambda f: (f.parent.parent.name,
                                                             f.parent.name, f.name))  # fmt: skip
        if not found:
            raise FileNotFoundError(f"no Parquet files of a trade archive under {p}")
        out.extend(found)
    return out
