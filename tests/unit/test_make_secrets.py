"""`make secrets` (deploy/make_secrets.py): the files docker-compose.yml reads, random and kept."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "make_secrets.py"


def _run(folder: Path) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), str(folder)], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return done.stdout


def test_the_secrets_are_made_for_compose_and_kept(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    assert "kept 0 existing" in _run(folder)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    wanted = {Path(s["file"]).name for s in compose["secrets"].values()}
    files = {p.name: p for p in folder.iterdir()}
    assert set(files) == wanted  # exactly the files compose names
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # other users cannot reach them
    values = {name: p.read_text() for name, p in files.items()}
    assert all(v.endswith("\n") and len(v.strip()) >= 40 for v in values.values())
    assert len(set(values.values())) == len(values)  # each its own
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in files.values())
    files["pg_flow_password.txt"].unlink()
    assert "made pg_flow_password; kept 5 existing" in _run(folder)
    again = {p.name: p.read_text() for p in folder.iterdir()}
    assert again.keys() == values.keys()
    assert again["pg_flow_password.txt"] != values["pg_flow_password.txt"]  # rotated
    assert {k: v for k, v in again.items() if k != "pg_flow_password.txt"} == {
        k: v for k, v in values.items() if k != "pg_flow_password.txt"
    }
