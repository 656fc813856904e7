"""Where symbols go in a cluster, and how a local cluster's members are started."""

from __future__ import annotations

import pytest

from flows.cluster import ClusterPlace, member_args, siphash13, worker_of


@pytest.mark.parametrize(
    ("data", "k0", "k1", "want"),
    [  # computed with the `siphash24` package's C SipHash-1-3 (an independent implementation)
        (b"", 0, 0, 15130871412783076140),
        (b"BTCUSDT\xff", 0, 0, 14042258676639519847),
        (b"abcdefgh", 0, 0, 4574395652268504554),  # exactly one 8-byte word
        (b"0123456789abcdef0", 0, 0, 17814194274854507048),  # two words and a tail
        (b"abc", 0x0706050403020100, 0x0F0E0D0C0B0A0908, 8056417365207893739),  # keyed
    ],
)
def test_siphash13_matches_an_independent_implementation(
    data: bytes, k0: int, k1: int, want: int
) -> None:
    assert siphash13(data, k0, k1) == want


def test_every_symbol_has_exactly_one_owner_and_they_are_spread() -> None:
    addresses = ("h1:1", "h2:2", "h3:3")
    symbols = [f"S{i}USDT" for i in range(300)]
    owners = [[ClusterPlace(i, addresses).owns(s) for i in range(3)] for s in symbols]
    assert all(sum(o) == 1 for o in owners)
    shares = [sum(o[i] for o in owners) for i in range(3)]
    assert min(shares) > 60  # spread over the processes, not all on one
    assert all(worker_of(s, 1) == 0 for s in symbols)


def test_a_place_is_parsed_and_checked() -> None:
    place = ClusterPlace.parse(1, "10.0.0.5:2101; 10.0.0.6:2101")
    assert place.addresses == ("10.0.0.5:2101", "10.0.0.6:2101") and place.processes == 2
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        ClusterPlace.parse(2, "a:1;b:2")
    with pytest.raises(ValueError, match="not host:port"):
        ClusterPlace.parse(0, "a:1;b")
    with pytest.raises(ValueError, match="at least one"):
        ClusterPlace.parse(0, " ; ")


def test_members_inherit_the_flow_options_but_not_the_supervisors_own() -> None:
    argv = ["--symbols", "A,B", "--processes", "2", "--dashboard-port=8600", "--no-dashboard",
            "--record", "/tmp/rec", "--metrics-port", "9108", "--grace-ms", "500",
            "--processes=2", "--dashboard", "--archive=/tmp/arc"]  # fmt: skip
    place = ClusterPlace(1, ("127.0.0.1:5000", "127.0.0.1:5001"))
    assert member_args(argv, place, 9109) == [
        "--symbols", "A,B", "--record", "/tmp/rec", "--grace-ms", "500", "--archive=/tmp/arc",
        "--process-id", "1", "--addresses", "127.0.0.1:5000;127.0.0.1:5001",
        "--no-dashboard", "--metrics-port", "9109",
    ]  # fmt: skip
