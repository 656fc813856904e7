"""Addresses a command listens on: taken before anything starts, or the start fails.

A server started in a thread or a child process that finds its port taken only logs it, and
the command ran on as if it worked (the demo said its API was up and exited 0). So every
command checks its ports first: ``listening_socket`` binds and listens and hands the socket
to the server (no window between the check and the use), ``ensure_free`` checks a port a
child process will bind (a narrow window remains: the child's own failure is then reported
by ``wait_listening``).
"""

from __future__ import annotations

import socket
import subprocess
import threading

from flows.app.errors import PortTaken


def _taken(what: str, host: str, port: int, option: str) -> PortTaken:
    return PortTaken(f"{what} cannot listen on {host}:{port}: the port is taken",
                     f"stop what listens there, or choose another with {option}")  # fmt: skip


def listening_socket(host: str, port: int, what: str, option: str) -> socket.socket:
    """A socket bound to (host, port) and listening; PortTaken when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise _taken(what, host, port, option) from exc
    return sock


def ensure_free(host: str, port: int, what: str, option: str) -> None:
    """PortTaken unless (host, port) can be listened on now."""
    listening_socket(host, port, what, option).close()


def wait_listening(
    process: subprocess.Popen[bytes], host: str, port: int, what: str, option: str,
    timeout_s: float = 60.0,
) -> None:  # fmt: skip
    """Until the child listens on (host, port); PortTaken if it exited first (another
    process took the port between the check and its start)."""
    pause = threading.Event()
    waited = 0.0
    while waited < timeout_s:
        if process.poll() is not None:
            raise _taken(what, host, port, option)
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            pause.wait(0.1)
            waited += 0.1
    raise PortTaken(f"{what} did not start listening on {host}:{port} within {timeout_s:g} s",
                    "see its log")  # fmt: skip
