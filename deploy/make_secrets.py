"""Random passwords for docker-compose.yml, one file each, in ./secrets/ (ignored by git).

    python3 deploy/make_secrets.py [DIR]      # `make secrets`; DIR defaults to ./secrets

A file that exists is kept (to rotate a password, delete its file, run this again and
`docker compose up`: the one-shot services rewrite the Redis ACL file and the PostgreSQL
logins). The folder is made readable by its owner only (0700): that is what keeps other users
of this machine out. The files themselves are 0644 because compose, outside swarm mode, hands
a file secret to a container as a bind mount with the host's owner and mode, and the
containers' users (klineflow 10001, postgres, redis) are not the host user who made them.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

NAMES = (
    "postgres_owner_password",
    "pg_flow_password",
    "pg_dashboard_password",
    "redis_flow_password",
    "redis_api_password",
    "redis_dashboard_password",
)
FOLDER_MODE = 0o700
FILE_MODE = 0o644


def make_secrets(folder: Path) -> list[str]:
    """Create the missing secret files; return the names of those made."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(FOLDER_MODE)
    made = []
    for name in NAMES:
        path = folder / f"{name}.txt"
        if path.exists():
            continue
        # 32 random bytes, URL-safe text: fits in a URL or a command line untouched
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        path.chmod(FILE_MODE)
        made.append(name)
    return made


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "secrets")
    made = make_secrets(folder)
    kept = len(NAMES) - len(made)
    print(f"{folder}/: made {', '.join(made) if made else 'nothing'}; kept {kept} existing")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
