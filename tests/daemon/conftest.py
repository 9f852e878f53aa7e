"""Fixtures for the daemon tests: the pipeline tests' whole deployment (test CA, sandbox over
HTTP, SQLite and PostgreSQL state stores), a notify socket the test binds, and ``syncd run``
started as a real subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from syncd.state.db import Database
from syncd.state.models import Run

from ..pipeline.conftest import Deployment, deployment, gmail_state, pipeline_ca, sandbox_users

__all__ = [
    "Deployment",
    "NotifySocket",
    "RunningDaemon",
    "deployment",
    "finished_passes",
    "free_port",
    "gmail_state",
    "pipeline_ca",
    "sandbox_users",
    "wait_until",
]

WAIT = 90.0
"""Upper bound for something to happen (never an assertion on speed: only a hang fails)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], Any], what: str, timeout: float = WAIT, on_fail: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting {timeout:.0f}s for {what}\n{on_fail}")
        time.sleep(0.1)


class NotifySocket:
    """A unix datagram socket standing in for systemd's: collects every notification."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append(data.decode())

    def lines(self) -> list[str]:
        return [line for message in list(self.messages) for line in message.split("\n")]

    def statuses(self) -> list[str]:
        return [line.removeprefix("STATUS=") for line in self.lines() if line.startswith("STATUS=")]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.sock.close()


class RunningDaemon:
    """``syncd run`` in a subprocess, its stderr in a file."""

    def __init__(self, deploy: Deployment, notify: NotifySocket, env: dict[str, str]) -> None:
        self.deploy = deploy
        self.notify = notify
        number = len(list(deploy.root.glob("daemon-*.log")))
        self.log_path = deploy.root / f"daemon-{number}.log"
        self._log = self.log_path.open("w")
        full_env = {k: v for k, v in os.environ.items() if k != "SYNCD_CRASH_AT"}
        full_env.update({"NOTIFY_SOCKET": str(notify.path), **env})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "syncd", "--config", str(deploy.config_path), "run"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        def check() -> Any:
            value = condition()
            if not value and not self.running():
                pytest.fail(
                    f"syncd run exited ({self.process.returncode}) before {what}:\n"
                    f"{self.log()[-4000:]}"
                )
            return value

        return wait_until(check, what, timeout, on_fail=self.log()[-4000:])

    def wait_for_notification(self, line: str) -> None:
        self.wait_until(lambda: line in self.notify.lines(), f"{line} on the notify socket")

    def send(self, number: signal.Signals) -> None:
        self.process.send_signal(number)

    def stop(self, timeout: float = WAIT) -> int:
        if self.running():
            self.send(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"syncd run did not stop within {timeout:.0f}s:\n{self.log()[-4000:]}")
        self._log.close()
        return code


def finished_passes(url: str) -> list[Run]:
    """The sync runs of the state store at ``url`` that have finished, oldest first."""
    database = Database.open(url)
    try:
        with database.sessions() as session:
            runs = list(
                session.scalars(
                    select(Run)
                    .where(Run.kind == "sync", Run.finished_at.is_not(None))
                    .order_by(Run.id)
                )
            )
            session.expunge_all()
    finally:
        database.close()
    return runs


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # Unix socket paths are short (108 bytes): pytest's tmp_path may be too long.
    folder = Path(tempfile.mkdtemp(prefix="syncd-notify-", dir="/tmp"))
    notify = NotifySocket(folder / "notify.sock")
    yield notify
    notify.close()
    (folder / "notify.sock").unlink(missing_ok=True)
    folder.rmdir()


@pytest.fixture
def daemon_deployment(deployment: Deployment) -> Deployment:
    """The deployment with a one-second schedule and a metrics endpoint on a free port."""
    deployment.update_config(
        schedule={"interval": "1s", "jitter": "0.1s"},
        metrics={"listen": f"127.0.0.1:{free_port()}"},
        daemon={"stop_timeout": "60s"},
        logging={"level": "INFO"},
    )
    return deployment


@pytest.fixture
def start_daemon(
    daemon_deployment: Deployment, notify_socket: NotifySocket
) -> Iterator[Callable[..., RunningDaemon]]:
    started: list[RunningDaemon] = []

    def start(**env: str) -> RunningDaemon:
        daemon = RunningDaemon(daemon_deployment, notify_socket, env)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.running():
            daemon.process.kill()
            daemon.process.wait()
