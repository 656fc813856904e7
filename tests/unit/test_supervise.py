"""The local cluster's supervisor, with real member processes (tiny Python programs)."""

from __future__ import annotations

import sys
from pathlib import Path

from flows.cluster import ClusterPlace, Restarts, supervise


def _members(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_members_that_end_by_themselves_end_the_cluster() -> None:
    assert supervise(lambda place: _members("pass"), 2) == 0


def test_a_member_refusing_its_configuration_stops_the_supervisor_at_once(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    code = f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(2)"
    assert supervise(lambda place: _members(code), 2, Restarts(pause_s=0.0)) == 2
    assert len(starts.read_text()) == 2  # one start of each member, no restart


def test_failing_members_restart_the_whole_cluster_until_the_limit(tmp_path: Path) -> None:
    starts = tmp_path / "starts"

    def command(place: ClusterPlace) -> list[str]:
        # member 0 fails at once; member 1 would run on, as a peer does, until stopped
        body = "raise SystemExit(1)" if place.process_id == 0 else "import time; time.sleep(60)"
        return _members(f"open({str(starts)!r}, 'a').write('{place.process_id}'); {body}")

    assert supervise(command, 2, Restarts(limit=2, pause_s=0.0)) == 1
    # three clusters (the first and 2 restarts), each with both members started
    assert sorted(starts.read_text()) == sorted("010101")
