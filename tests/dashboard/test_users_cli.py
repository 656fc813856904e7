"""`users_app` (mounted by the CLI as `klineflow users`)."""

from __future__ import annotations

from typer.testing import CliRunner

from dashboard.data.users import verify
from dashboard.users_cli import users_app


def test_add_with_a_prompt_and_list(signals_db: str) -> None:
    runner = CliRunner()
    got = runner.invoke(
        users_app,
        ["add", "ana", "--database-url", signals_db],
        input="a fine password\na fine password\n",
    )
    assert got.exit_code == 0, got.output
    assert "added user 'ana'" in got.output
    ana = verify(signals_db, "ana", "a fine password")
    assert ana is not None
    got = runner.invoke(users_app, ["add", "bob", "--password", "bob password 1",
                                    "--database-url", signals_db])  # fmt: skip
    assert got.exit_code == 0, got.output
    again = runner.invoke(users_app, ["add", "bob", "--password", "bob password 2",
                                      "--database-url", signals_db])  # fmt: skip
    assert again.exit_code == 2 and "already exists" in again.output
    listed = runner.invoke(users_app, ["list", "--database-url", signals_db])
    assert listed.exit_code == 0, listed.output
    for name in ("local", "ana", "bob"):
        assert name in listed.output


def test_password_changes_an_existing_users_password(signals_db: str) -> None:
    runner = CliRunner()
    runner.invoke(users_app, ["add", "cy", "--password", "first password",
                              "--database-url", signals_db])  # fmt: skip
    got = runner.invoke(users_app, ["password", "cy", "--password", "second password",
                                    "--database-url", signals_db])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert verify(signals_db, "cy", "second password") is not None
    assert verify(signals_db, "cy", "first password") is None
    missing = runner.invoke(users_app, ["password", "nobody", "--password", "whatever pw",
                                        "--database-url", signals_db])  # fmt: skip
    assert missing.exit_code == 2 and "no user named 'nobody'" in missing.output


def test_the_demo_gives_its_local_user_a_password_once(signals_db: str) -> None:
    from flows.cli.common import _demo_sign_in

    password = _demo_sign_in(signals_db)
    assert password is not None and verify(signals_db, "local", password) is not None
    assert _demo_sign_in(signals_db) is None  # set before: left alone, not printed again
