"""Signing in and out (the sidebar's contract the browser test relies on), accounts."""

from __future__ import annotations

import psycopg
import pytest

from dashboard.data.users import (
    SignInUnavailable,
    UserError,
    add_user,
    list_users,
    set_sso,
    sso_sign_in,
    verify,
)
from dashboard.ui.common import SESSION, USER_ID
from tests.dashboard.conftest import PASSWORD, Filled, make_app, no_exceptions


def sidebar_texts(at: object, kind: str) -> list[str]:
    return [e.value for e in getattr(at.sidebar, kind)]  # type: ignore[attr-defined]


def test_sign_in_fails_then_succeeds_then_signs_out(filled: Filled, app_env: None) -> None:
    at = make_app().run()
    no_exceptions(at)
    assert [t.label for t in at.sidebar.text_input] == ["User name", "Password"]
    assert [b.label for b in at.sidebar.button] == ["Sign in"]
    at.sidebar.text_input[0].input("ana")
    at.sidebar.text_input[1].input("not the password")
    at.sidebar.button[0].click().run()
    assert sidebar_texts(at, "error") == ["Wrong user name or password"]
    assert USER_ID not in at.session_state
    at.sidebar.text_input[1].input(PASSWORD)
    at.sidebar.button[0].click().run()
    no_exceptions(at)
    assert "Signed in as ana" in sidebar_texts(at, "caption")
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    assert at.session_state[USER_ID] == filled.ana
    assert not at.sidebar.error
    # the session stays signed in across pages
    at.switch_page("views/traders.py").run()
    assert "Signed in as ana" in sidebar_texts(at, "caption")
    at.sidebar.button[0].click().run()
    assert USER_ID not in at.session_state
    assert [b.label for b in at.sidebar.button] == ["Sign in"]


def test_unknown_user_is_refused_like_a_wrong_password(filled: Filled, app_env: None) -> None:
    at = make_app().run()
    at.sidebar.text_input[0].input("mallory")
    at.sidebar.text_input[1].input(PASSWORD)
    at.sidebar.button[0].click().run()
    assert sidebar_texts(at, "error") == ["Wrong user name or password"]


def test_accounts_hash_passwords_with_argon2(signals_db: str) -> None:
    uid = add_user(signals_db, "cleo", "a good password")
    with psycopg.connect(signals_db) as conn:
        (digest,) = conn.execute("SELECT password_hash FROM users WHERE id = %s", (uid,)).fetchone()  # type: ignore[misc]
    assert digest.startswith("$argon2id$") and "a good password" not in digest
    assert verify(signals_db, "cleo", "a good password") == uid
    assert verify(signals_db, "cleo", "a bad password") is None
    assert verify(signals_db, "nobody", "a good password") is None
    with pytest.raises(UserError, match="already exists"):
        add_user(signals_db, "cleo", "another password")
    # 'local' (made by the migrations, no password) can be given one
    local = add_user(signals_db, "local", "local password")
    assert verify(signals_db, "local", "local password") == local
    assert {u.name: u.has_password for u in list_users(signals_db)} == {
        "local": True,
        "cleo": True,
    }
    with pytest.raises(UserError):
        add_user(signals_db, "short", "pw")


def test_single_sign_on_maps_the_identity_to_a_user_row(filled: Filled, app_env: None) -> None:
    auth = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "id",
        "client_secret": "secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    # off until the owner switches it on: the dashboard alone cannot vouch for anyone
    off = make_app()
    off.secrets["auth"] = auth
    off.user = {"is_logged_in": True, "email": "dana@example.com", "sub": "abc"}
    off.run()
    no_exceptions(off)
    assert USER_ID not in off.session_state
    (error,) = [e.value.replace("\\", "") for e in off.sidebar.error]
    assert "single sign-on is switched off" in error and "klineflow users sso on" in error
    with pytest.raises(SignInUnavailable):
        sso_sign_in(filled.database_url, "dana@example.com")
    set_sso(filled.database_url, True)

    at = make_app()
    at.secrets["auth"] = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 32,
        "client_id": "id",
        "client_secret": "secret",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
    }
    at.user = {"is_logged_in": True, "email": "dana@example.com", "sub": "abc"}
    at.run()
    no_exceptions(at)
    assert "Signed in as oidc:dana@example.com" in [
        c.value.replace("\\", "") for c in at.sidebar.caption
    ]
    again = sso_sign_in(filled.database_url, "dana@example.com")  # the same row again
    assert at.session_state[USER_ID] == again.user_id and again.name == "oidc:dana@example.com"
    assert at.session_state[SESSION].token != again.token  # a session each
    # never for an account that signs in with a password
    with pytest.raises(SignInUnavailable, match="signs in with a password"):
        with psycopg.connect(filled.database_url) as conn:
            conn.execute("INSERT INTO users (name, password_hash) VALUES ('oidc:eve', 'x')")
        sso_sign_in(filled.database_url, "eve")
    # signed out of the provider: the sign-in form offers single sign-on too
    other = make_app()
    other.secrets["auth"] = at.secrets["auth"]
    other.user = {"is_logged_in": False}
    other.run()
    labels = [b.label for b in other.sidebar.button]
    assert labels == ["Sign in", "Sign in with single sign-on"]
