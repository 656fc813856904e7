"""The Redis ACL rules of flows.access, as text (the real server loads them in
tests/integration/test_redis_acl.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.access import (
    API_READS,
    DASHBOARD_READS,
    DEFAULT_OFF,
    FLOW_KEYS,
    READERS,
    USERS,
    OldRedisError,
    acl_file,
    acl_user,
    key_patterns,
    rights,
)
from flows.cli import app
from flows.domain.keys import KeySpace

PASSWORDS = {"flow": "f" * 16, "api": "a" * 16, "dashboard": "d" * 16}


def _words(line: str, prefix: str) -> list[str]:
    return [w[len(prefix) :] for w in line.split() if w.startswith(prefix)]


def test_every_key_of_the_keyspace_is_given_to_someone() -> None:
    # a new KeySpace key fails here until flows.access says who may touch it
    assert set(key_patterns(KeySpace())) == FLOW_KEYS
    assert API_READS <= DASHBOARD_READS <= FLOW_KEYS


def test_patterns_come_from_the_keyspace_with_a_literal_namespace() -> None:
    patterns = key_patterns(KeySpace("a*b"))
    assert patterns["klines"] == "a\\*b:klines:*:*"
    assert patterns["last_closed"] == "a\\*b:klines:last_closed:*:*"
    assert patterns["heartbeat"] == "a\\*b:klineflow:heartbeat"
    assert key_patterns(KeySpace())["symbols"] == KeySpace().symbols
    with pytest.raises(ValueError, match="no spaces"):
        key_patterns(KeySpace("a b"))


def test_the_readers_keys_are_read_only_and_only_the_flow_writes() -> None:
    keys = KeySpace("live")
    api = acl_user("api", PASSWORDS["api"], keys)
    assert _words(api, "~") == [] and len(_words(api, "%R~")) == len(API_READS)
    board = acl_user("dashboard", PASSWORDS["dashboard"], keys)
    assert _words(board, "~") == [] and len(_words(board, "%R~")) == len(DASHBOARD_READS)
    assert all(p.startswith("live:") for p in _words(board, "%R~"))
    assert _words(board, "&") == [] and _words(api, "&") == []  # publish nowhere
    flow = acl_user("flow", PASSWORDS["flow"], keys)
    assert _words(flow, "%R~") == [] and "live:klines:*:*" in _words(flow, "~")
    assert _words(flow, "&") == ["live:klines:closed", "backtest-*:klines:closed"]


@pytest.mark.parametrize("major", [5, 6])
def test_a_redis_older_than_7_is_refused_in_one_line(major: int) -> None:
    with pytest.raises(OldRedisError, match=r"%R~ needs Redis >= 7") as caught:
        acl_file(PASSWORDS, "ns", major)
    assert "\n" not in str(caught.value) and f"Redis {major}," in str(caught.value)
    with pytest.raises(OldRedisError):
        acl_user("api", PASSWORDS["api"], KeySpace(), major)


def test_each_user_gets_only_its_commands() -> None:
    commands = {u: set(rights(u).commands) for u in USERS}
    writes = {"zadd", "set", "sadd", "xadd", "evalsha", "del", "hset", "publish", "expire"}
    scripts = {"eval", "evalsha", "script|load", "script|exists", "fcall", "function"}
    for reader in READERS:
        assert not commands[reader] & (writes | scripts | {"multi", "exec"})
    assert {"hset", "expire", "multi"} <= commands["flow"]
    for forbidden in ("keys", "flushall", "flushdb", "config", "info", "eval", "acl", "@all"):
        assert all(forbidden not in c for c in commands.values())
    for user in USERS:
        line = acl_user(user, PASSWORDS[user])
        assert "-@all" in line.split() and "resetchannels" in line.split()


def test_the_file_switches_the_default_user_off_and_stores_no_password() -> None:
    text = acl_file(PASSWORDS, "ns")
    lines = text.splitlines()
    assert lines[0] == DEFAULT_OFF and lines[0].startswith("user default off")
    assert [line.split()[1] for line in lines] == ["default", *USERS]
    assert all(line.split()[2] == "on" and line.split()[3].startswith("#") for line in lines[1:])
    assert not any(p in text for p in PASSWORDS.values())


@pytest.mark.parametrize(
    ("passwords", "expected"),
    [
        ({"flow": "f" * 16, "api": "a" * 16}, "each of flow, api, dashboard"),
        ({**PASSWORDS, "admin": "x" * 16}, "and no other"),
        ({**PASSWORDS, "api": "f" * 16}, "a password of its own"),
        ({**PASSWORDS, "api": "short"}, "at least 16 characters"),
    ],
)
def test_bad_passwords_are_refused(passwords: dict[str, str], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        acl_file(passwords)


def test_the_command_writes_a_private_file_or_prints(tmp_path: Path) -> None:
    args = ["access", "redis-acl"]
    for user, password in PASSWORDS.items():
        (tmp_path / user).write_text(password + "\n")
        args += [f"--{user}-password-file", str(tmp_path / user)]
    out = tmp_path / "acl" / "users.acl"
    out.parent.mkdir()
    out.write_text("old")
    out.chmod(0o644)
    done = CliRunner().invoke(app, [*args, "--namespace", "ns", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text() == acl_file(PASSWORDS, "ns")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in out.parent.iterdir()] == ["users.acl"]  # no temporary left
    printed = CliRunner().invoke(app, [*args, "--namespace", "ns", "--redis-version", "8"])
    assert printed.exit_code == 0 and printed.stdout == acl_file(PASSWORDS, "ns", 8)
    old = CliRunner().invoke(app, [*args, "--redis-version", "6", "--out", str(out)])
    assert old.exit_code == 2 and "%R~ needs Redis >= 7" in old.output
    assert out.read_text() == acl_file(PASSWORDS, "ns")  # left as it was
    (tmp_path / "api").write_text("\n")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "empty" in refused.output
