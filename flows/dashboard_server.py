"""Start the Streamlit dashboard as a child process (`klineflow dashboard`, `up`, `demo`).

The dashboard is a separate process (Streamlit runs its own server and script threads); it
finds Redis and PostgreSQL through the same KLINEFLOW_* environment variables as the rest of
the package, set here from the URLs the caller resolved.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flows.settings import handing_over

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


@dataclass
class DashboardProcess:
    process: subprocess.Popen[bytes]
    url: str

    def ready(self) -> bool:
        """Whether Streamlit answers its health check (False while starting or dead)."""
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_dashboard(
    redis_url: str,
    database_url: str | None,
    namespace: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8501,
    log: Path | None = None,
) -> DashboardProcess:
    from flows.app.ports import ensure_free

    ensure_free(host, port, "the dashboard", "--dashboard-port (or --port)")  # or PortTaken
    urls = {"redis_url": redis_url, **({"database_url": database_url} if database_url else {})}
    env = handing_over(os.environ, **urls)  # resolved: passwords included, no *_FILE twice
    if namespace:
        env["KLINEFLOW_NAMESPACE"] = namespace
    env.setdefault("PYTHONPATH", str(APP.parent.parent))
    args = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    return DashboardProcess(process, f"http://{host}:{port}")
