"""The live flow as a Bytewax cluster: several processes, each ingesting its own symbols.

Bytewax sends every keyed item to the worker that owns its key: worker
`siphash13(key bytes + 0xff, key 0) mod workers` (what Rust's default hasher gives for a `str`;
checked against Bytewax 0.21.1 by `tests/integration/test_cluster.py`, which counts batches
that crossed processes). Each process therefore opens connections only for the symbols whose
key it owns: a symbol's trades, klines and rule state never leave the process that received
them, and nothing but Bytewax's own progress messages crosses. If a
future Bytewax hashed differently the output would stay the same (keys are still routed by
Bytewax), only slower; the `klineflow_foreign_batches_total` metric would then be non-zero.

One worker per process: workers in one process share the GIL.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from flows.domain.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

_MASK = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _MASK


def siphash13(data: bytes, k0: int = 0, k1: int = 0) -> int:
    """SipHash-1-3 (one compression round, three finalisation rounds) of `data`."""
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573

    def rounds(n: int) -> None:
        nonlocal v0, v1, v2, v3
        for _ in range(n):
            v0 = (v0 + v1) & _MASK
            v1 = _rotl(v1, 13) ^ v0
            v0 = _rotl(v0, 32)
            v2 = (v2 + v3) & _MASK
            v3 = _rotl(v3, 16) ^ v2
            v0 = (v0 + v3) & _MASK
            v3 = _rotl(v3, 21) ^ v0
            v2 = (v2 + v1) & _MASK
            v1 = _rotl(v1, 17) ^ v2
            v2 = _rotl(v2, 32)

    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        rounds(1)
        v0 ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v3 ^= last
    rounds(1)
    v0 ^= last
    v2 ^= 0xFF
    rounds(3)
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, workers: int) -> int:
    """The worker Bytewax routes a keyed item with this key to."""
    return siphash13(key.encode() + b"\xff") % workers


@dataclass(frozen=True, slots=True)
class ClusterPlace:
    """Where one process stands in a cluster: its index and every member's host:port, listed
    in the same order by every member."""

    process_id: int
    addresses: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("a cluster needs at least one address")
        if not 0 <= self.process_id < len(self.addresses):
            raise ValueError(
                f"process id {self.process_id} is not in 0..{len(self.addresses) - 1} "
                f"(one per address in --addresses)"
            )
        for a in self.addresses:
            host, sep, port = a.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"cluster address {a!r} is not host:port")

    @property
    def processes(self) -> int:
        return len(self.addresses)

    @property
    def part_prefix(self) -> str:
        """What names this process's partitions and recordings apart: "p0of2-" (one process:
        nothing)."""
        return f"p{self.process_id}of{self.processes}-" if self.processes > 1 else ""

    def owns(self, symbol: str) -> bool:
        return worker_of(symbol, self.processes) == self.process_id

    def own(self, symbols: Iterable[str]) -> list[str]:
        return [s for s in symbols if self.owns(s)]

    @classmethod
    def parse(cls, process_id: int, addresses: str) -> ClusterPlace:
        return cls(process_id, tuple(a.strip() for a in addresses.split(";") if a.strip()))


SINGLE = ClusterPlace(0, ("127.0.0.1:0",))  # a flow of one process (no cluster traffic)


def local_addresses(n: int, host: str = "127.0.0.1") -> tuple[str, ...]:
    """`n` free ports on this machine for the members of a local cluster."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return tuple(f"{host}:{s.getsockname()[1]}" for s in socks)
    finally:
        for s in socks:
            s.close()


# -- a local cluster: `klineflow up --processes N` ---------------------------------------------

# options of `up` that the members of a local cluster must not inherit (value-taking first)
_MEMBER_DROPS_VALUE = ("--processes", "--dashboard-port", "--metrics-port")
_MEMBER_DROPS_FLAG = ("--dashboard", "--no-dashboard")


def member_args(argv: list[str], place: ClusterPlace, metrics_port: int) -> list[str]:
    """The `up` arguments of one member of a local cluster, from the supervisor's own: the
    same flow, plus its place (and its own recording: `--record` and `--archive` pass on);
    the dashboard stays with the supervisor."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in _MEMBER_DROPS_VALUE:
            skip = "=" not in arg
            continue
        if name in _MEMBER_DROPS_FLAG:
            continue
        out.append(arg)
    out += ["--process-id", str(place.process_id), "--addresses", ";".join(place.addresses)]
    out += ["--no-dashboard", "--metrics-port", str(metrics_port)]
    return out


@dataclass
class Restarts:
    """How often a local cluster is restarted after a member fails: at most `limit` times
    within `window_s` (then the supervisor gives up), `pause_s` between attempts."""

    limit: int = 5
    window_s: float = 600.0
    pause_s: float = 2.0


def local_members(supervisor_pid: int) -> list[int]:
    """The live member processes of a local cluster: the supervisor's children (Linux /proc;
    for tests, benchmarks and operators' scripts)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == supervisor_pid and state != "Z":  # a member already dead is not one
            out.append(int(entry.name))
    return sorted(out)


def _stop_all(procs: list[subprocess.Popen[bytes]], sig: int, grace_s: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def supervise(
    command: Callable[[ClusterPlace], list[str]],
    processes: int,
    restarts: Restarts | None = None,
    clock: Clock = SYSTEM_CLOCK,
    env: dict[str, str] | None = None,
) -> int:
    """Run a local cluster of `processes` members (`command(place)` each) until they end.

    A member that fails takes the cluster down with it (Bytewax members abort when a peer
    goes away), so the supervisor stops the rest and starts the whole cluster again; each
    member resumes its symbols from the stores (Redis and PostgreSQL). Ctrl-C or SIGTERM stop
    every member. Returns 0 when the members ended by themselves (--duration), 1 when they
    kept failing, 2 when a member refused its configuration, 130 when interrupted.
    """
    policy = restarts or Restarts()
    failures: deque[float] = deque()
    interrupted = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        interrupted.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)
    pause = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        while True:
            addresses = local_addresses(processes)
            procs = [
                subprocess.Popen(command(ClusterPlace(i, addresses)), env=env or dict(os.environ))
                for i in range(processes)
            ]
            log.info("cluster of %d processes on %s, pids %s", processes,
                     ";".join(addresses), [p.pid for p in procs])  # fmt: skip
            first: int | None = None
            try:
                while first is None and not interrupted.is_set():
                    first = next((p.returncode for p in procs if p.poll() is not None), None)
                    if first is None:
                        pause.wait(0.2)
            except KeyboardInterrupt:
                interrupted.set()
            if interrupted.is_set():
                # Ctrl-C in a terminal reached the members too: let them finish on their own
                # (a second SIGINT could cut their summaries short), then ask those still up
                for p in procs:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        p.wait(timeout=5.0)
                _stop_all(procs, signal.SIGINT, 20.0)
                return 130
            if first == 0:  # --duration: the others end on their own in a moment
                for p in procs:
                    try:
                        p.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
                if all(p.returncode == 0 for p in procs):
                    return 0
            _stop_all(procs, signal.SIGTERM, 10.0)
            codes = [p.returncode for p in procs]
            if 2 in codes:  # a usage or configuration error: starting again cannot help
                log.error("a cluster member refused its configuration (exit codes %s)", codes)
                return 2
            now = clock.monotonic_s()
            failures.append(now)
            while failures and failures[0] < now - policy.window_s:
                failures.popleft()
            if len(failures) > policy.limit:
                log.error("cluster members keep failing (exit codes %s, %d times in %.0f s); "
                          "giving up", codes, len(failures), policy.window_s)  # fmt: skip
                return 1
            log.warning("cluster member ended (exit codes %s); restarting the cluster in %.0f s "
                        "(its members resume from the stores)", codes, policy.pause_s)  # fmt: skip
            pause.wait(policy.pause_s)
            if interrupted.is_set():
                return 130
    except KeyboardInterrupt:  # between two clusters, or while one was ending
        _stop_all(procs, signal.SIGINT, 20.0)
        return 130
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
