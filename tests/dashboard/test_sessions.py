"""Signing in with the dashboard's own login (sql/0006): PostgreSQL compares the argon2 hash
computed here from the typed password with the stored one, and answers with a session whose
token then names the user; sessions expire and end; failures are throttled per name; a
password changes only with the old one; an unknown name looks like a known one."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from argon2 import PasswordHasher
from psycopg import sql
from psycopg.conninfo import make_conninfo

from dashboard.data.db import Database, Session, SessionEnded
from dashboard.data.users import (
    SignInUnavailable,
    add_user,
    change_password,
    resume,
    set_password,
    sign_in,
    sign_out,
    verify,
)
from flows.storage.pg_roles import ensure_login

PW = "ana's long password"


@pytest.fixture
def board(signals_db: str) -> Iterator[str]:
    """The dashboard's login (ensure_login, component dashboard) on a database with 'ana'."""
    add_user(signals_db, "ana", PW)
    name, password = f"kf_board_{secrets.token_hex(4)}", secrets.token_urlsafe(18)
    ensure_login(signals_db, name, password, "dashboard")
    yield make_conninfo(signals_db, user=name, password=password)
    with psycopg.connect(signals_db, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _live(url: str, session: Session) -> bool:
    db = Database(url, max_size=1)
    try:
        return db.session_live(session)
    finally:
        db.close()


def _stored(owner: str, name: str) -> str:
    with psycopg.connect(owner) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def test_right_and_wrong_passwords_and_unknown_names(signals_db: str, board: str) -> None:
    session = sign_in(board, "ana", PW)
    assert session is not None and session.name == "ana" and _live(board, session)
    assert len(session.token) == 64 and session.token not in repr(session)
    assert sign_in(board, " ana ", PW) is not None  # the name as the form strips it
    assert sign_in(board, "ana", PW + " ") is None
    assert sign_in(board, "ana", "") is None
    assert sign_in(board, "Ana", PW) is None
    assert sign_in(board, "nobody", PW) is None
    assert sign_in(board, "local", "anything at all") is None  # an account without password
    with psycopg.connect(signals_db) as conn:  # only the token's digest is kept
        rows = conn.execute("SELECT token_sha256 FROM sessions").fetchall()
    assert rows and all(session.token.encode() not in bytes(r[0]) for r in rows)


def test_signed_out_and_expired_sessions_name_nobody(signals_db: str, board: str) -> None:
    gone, old, kept = (sign_in(board, "ana", PW) for _ in range(3))
    assert gone is not None and old is not None and kept is not None
    assert sign_out(board, gone) and not _live(board, gone)
    assert not sign_out(board, gone)  # once
    with psycopg.connect(signals_db) as conn:
        conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' "
            "WHERE token_sha256 = sha256(convert_to(%s, 'UTF8'))",
            (old.token,),
        )
        hours = conn.execute(
            "SELECT session_hours, expires_at - created_at FROM auth_settings, sessions "
            "WHERE token_sha256 = sha256(convert_to(%s, 'UTF8'))",
            (kept.token,),
        ).fetchone()
    assert hours is not None and hours[0] == 12 and hours[1].total_seconds() == 12 * 3600
    assert not _live(board, old)
    db = Database(board, max_size=1)
    try:
        with pytest.raises(SessionEnded):
            db.traders(old)
        assert db.traders(kept).value == []  # the other session goes on
    finally:
        db.close()


def test_failures_are_throttled_per_name(signals_db: str, board: str) -> None:
    with psycopg.connect(signals_db) as conn:
        conn.execute("UPDATE auth_settings SET max_failures = 3")
    for _ in range(3):
        assert sign_in(board, "ana", "wrong password") is None
        assert sign_in(board, "nobody", "wrong password") is None
    with pytest.raises(SignInUnavailable, match="too many failed sign-ins"):
        sign_in(board, "ana", PW)  # even the right password, for now
    with pytest.raises(SignInUnavailable):  # an unknown name alike: nothing to tell them apart
        sign_in(board, "nobody", PW)
    with psycopg.connect(signals_db) as conn:  # the window passes
        conn.execute("UPDATE sign_in_failures SET window_start = now() - interval '1 hour'")
    assert sign_in(board, "ana", PW) is not None


def test_unknown_names_get_stable_parameters_like_real_ones(board: str) -> None:
    def params(name: str) -> tuple[str, int]:
        with psycopg.connect(board) as conn:
            row = conn.execute(
                "SELECT params, hash_len FROM klineflow_auth_params(%s)", (name,)
            ).fetchone()
        assert row is not None
        return str(row[0]), int(row[1])

    real, fake, other = params("ana"), params("nobody"), params("somebody")
    assert params("nobody") == fake and fake != other  # stable per name, different across
    for p in (real, fake, other):
        head, salt = p[0].rsplit("$", 1)
        assert head == real[0].rsplit("$", 1)[0] and len(salt) == 22 and p[1] == 32


def test_old_parameters_are_replaced_at_sign_in(signals_db: str, board: str) -> None:
    weak = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
    with psycopg.connect(signals_db) as conn:
        conn.execute("UPDATE users SET password_hash = %s WHERE name = 'ana'", (weak.hash(PW),))
    assert "m=19456,t=2,p=1" in _stored(signals_db, "ana")
    assert sign_in(board, "ana", PW) is not None
    renewed = _stored(signals_db, "ana")
    assert not PasswordHasher().check_needs_rehash(renewed)
    PasswordHasher().verify(renewed, PW)
    assert verify(board, "ana", PW) is not None


def test_a_password_changes_with_the_old_one_and_ends_other_sessions(
    signals_db: str, board: str
) -> None:
    mine, other = sign_in(board, "ana", PW), sign_in(board, "ana", PW)
    assert mine is not None and other is not None
    assert not change_password(board, mine, "not the old one", "the new password")
    assert change_password(board, mine, PW, "the new password")
    assert _live(board, mine) and not _live(board, other)
    assert verify(board, "ana", PW) is None
    assert verify(board, "ana", "the new password") is not None
    # the owner's reset (klineflow users password) ends every session
    set_password(signals_db, "ana", "the owner's choice")
    assert not _live(board, mine)


def test_a_kept_token_resumes_its_live_session_only(signals_db: str, board: str) -> None:
    """What a browser's cookie holds is enough to resume the session (sql/0010), as long
    as the session lives: not once it expired, was signed out, or never existed."""
    live, old, gone = (sign_in(board, "ana", PW) for _ in range(3))
    assert live is not None and old is not None and gone is not None
    resumed = resume(board, live.token)
    assert resumed == live  # same user, name, token and expiry
    with psycopg.connect(signals_db) as conn:
        conn.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' "
            "WHERE token_sha256 = sha256(convert_to(%s, 'UTF8'))",
            (old.token,),
        )
    assert sign_out(board, gone)
    assert resume(board, old.token) is None
    assert resume(board, gone.token) is None
    assert resume(board, secrets.token_hex(32)) is None
