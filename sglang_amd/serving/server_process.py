"""One `sglang-amd serve` process, driven from outside: start, probe, stop.

Where it sits: the load-and-fault suite (`fault_suite.py`), its tests and
`sglang-amd bench serve` start the real HTTP server through this, in its own
session so that SIGTERM / SIGKILL reach every process SGLang forks (tokenizer,
scheduler, detokenizer). It reads the group's resident memory from /proc for
the memory bound. Never imports sglang.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerError(RuntimeError):
    """The server exited or did not become healthy; carries the log's tail."""


class ServerProcess:
    """`python -m sglang_amd.cli serve ARGS --host 127.0.0.1 --port P` in its own session."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = 600.0,
    ):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        cmd = [sys.executable, "-m", "sglang_amd.cli", "serve", *args]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env if env is not None else os.environ),
                start_new_session=True,
            )
        self._wait_healthy(start_timeout_s)
        self.model = self.info()["id"]

    def info(self) -> dict:
        """The served model as /v1/models lists it (id, root path, max_model_len)."""
        return requests.get(f"{self.base}/v1/models", timeout=30).json()["data"][0]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.healthy(timeout_s=2):
            if self.proc.poll() is not None:
                raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise ServerError(f"server not healthy after {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(1)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self, timeout_s: float = 30) -> bool:
        """SGLang's /health: 200 once a probe request went through the scheduler."""
        try:
            return requests.get(f"{self.base}/health", timeout=timeout_s).status_code == 200
        except requests.RequestException:
            return False

    def group_pids(self) -> list[int]:
        """Every live process of the server's session (SGLang forks several)."""
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.getsid(int(entry)) == self.proc.pid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                continue
        return pids

    def rss_bytes(self) -> int:
        """Resident memory of the whole server, summed over its processes."""
        page = os.sysconf("SC_PAGE_SIZE")
        total = 0
        for pid in self.group_pids():
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * page
            except (FileNotFoundError, ProcessLookupError):
                continue
        return total

    def terminate(self, timeout_s: float) -> int | None:
        """SIGTERM the server's main process; its exit code, or None past `timeout_s`."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def wait_group_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.group_pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def kill(self) -> None:
        """SIGKILL every process of the session (cleanup; never a test's verdict)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
