"""The command modules are thin: they parse options, call the application layer and print.
None of them talks to Redis or PostgreSQL itself (no SQL text, no client made or called)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLI_MODULES = [*sorted((REPO / "flows" / "cli").glob("*.py")), REPO / "dashboard" / "users_cli.py"]
FORBIDDEN = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE)\s|\.execute\(|psycopg\.connect|Redis\.from_url|"
    r"redis\.Redis\(|connect_redis|"
    r"\.(hgetall|hget|xlen|xrange|xadd|zrange\w*|zadd|scan_iter|pipeline)\("
)


def test_command_modules_hold_no_sql_and_no_redis_calls() -> None:
    assert len(CLI_MODULES) >= 8
    found = []
    for path in CLI_MODULES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if FORBIDDEN.search(code) and not code.lstrip().startswith(('"', "'")):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []
