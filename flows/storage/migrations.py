"""Forward-only PostgreSQL migrations: the numbered files in sql/, applied once each, in order.

A migration is a file named `NNNN_name.sql` (four digits, then lower-case letters, digits and
underscores). Other files in the folder (README.md, notes) are ignored. Each applied file is
recorded in `schema_migrations` with the SHA-256 of its bytes; if an applied file later
differs, `apply_migrations` refuses to go on: history is fixed, changes go into a new file.

Every file runs in its own transaction (so it must not contain BEGIN/COMMIT, nor statements
that cannot run in a transaction such as CREATE INDEX CONCURRENTLY), together with the row
that records it: a file is either applied and recorded, or neither. Each transaction first
takes an advisory lock, so two processes migrating the same database at once take turns and
the second finds the work done.

`MIGRATIONS_DIR` is where the migrations are, whatever the working directory: the wheel
carries the repository's top-level sql/ as the package data `flows/sql/` (pyproject.toml's
force-include), found with importlib.resources; a source checkout or an editable install has no
flows/sql/ and reads the top-level sql/ itself (flows/storage/migrations.py -> ../../sql), the
only copy kept in git.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg.rows import TupleRow

log = logging.getLogger(__name__)


def _migrations_dir() -> Path:
    """flows/sql/ in an installed wheel; else the checkout's top-level sql/.

    The packaged folder is looked for first: beside an installed package, ../../sql is
    site-packages/sql, which another distribution may own. The working directory is never
    looked at (a sql/ there may be anyone's)."""
    packaged = resources.files("flows") / "sql"
    if isinstance(packaged, Path) and packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "sql"


MIGRATIONS_DIR = _migrations_dir()

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

# pg_advisory_xact_lock key: any constant bigint of our own ("kfmigrat" in ASCII)
_LOCK_KEY = 0x6B666D6967726174

_CREATE_TABLE = b"""
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations folder or the database's migration history is not in a usable state."""


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # the file name, e.g. "0001_init.sql"
    checksum: str  # sha256 hex digest of the file's bytes
    sql: str


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, in order; raise MigrationError on a repeated number."""
    if not directory.is_dir():
        raise MigrationError(
            f"no migrations folder at {directory}: a wheel carries flows/sql/, a source "
            "checkout has sql/ at its top level"
        )
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        match = _NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        number = match.group(1)
        if number in found:
            raise MigrationError(
                f"{directory.name}/{found[number].name} and {directory.name}/{path.name} "
                f"share the number {number}: each migration needs its own"
            )
        found[number] = path
    migrations = []
    for _, path in sorted(found.items()):
        data = path.read_bytes()
        migrations.append(
            Migration(path.name, hashlib.sha256(data).hexdigest(), data.decode("utf-8"))
        )
    return migrations


def _lock(conn: psycopg.Connection[TupleRow]) -> None:
    # held until the surrounding transaction ends
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations in `directory` not yet applied; return their names, in order.

    Raises MigrationError, before applying anything later, at the first applied file whose
    contents changed since. A file that fails is rolled back and not recorded; the files
    before it stay applied.
    """
    migrations = migration_files(directory)
    done: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # concurrent runs take turns for the whole run (one applies everything, the others
        # find it done), not file by file; the lock ends with the session at the latest
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        with conn.transaction():
            _lock(conn)
            conn.execute(_CREATE_TABLE)
        for migration in migrations:
            with conn.transaction():
                _lock(conn)
                row = conn.execute(
                    "SELECT checksum FROM schema_migrations WHERE name = %s",
                    (migration.name,),
                ).fetchone()
                if row is not None:
                    if row[0] != migration.checksum:
                        raise MigrationError(
                            f"{directory.name}/{migration.name} was changed after it was "
                            "applied: migrations are forward-only, add a new file instead"
                        )
                    continue
                log.info("applying migration %s", migration.name)
                # bytes: the file is sent as it is (no placeholders are parsed, several
                # statements are allowed) through the simple query protocol
                conn.execute(migration.sql.encode("utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)",
                    (migration.name, migration.checksum),
                )
            done.append(migration.name)
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def applied(conninfo: str) -> list[tuple[str, str]]:
    """(name, checksum) of every applied migration, in order; empty if none ever ran."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if exists is None or not exists[0]:
            return []
        rows = conn.execute("SELECT name, checksum FROM schema_migrations ORDER BY name").fetchall()
    return [(str(name), str(checksum)) for name, checksum in rows]
