"""``syncd run`` as systemd runs it: notifications, scheduled passes, health, reload, logs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import (
    Deployment,
    RunningDaemon,
    finished_passes,
    gmail_state,
    sandbox_users,
)


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _all_provisioned(deploy: Deployment, emails: list[str]) -> bool:
    for email in emails:
        keypairs, identity = gmail_state(deploy, email)
        if len(keypairs) != 1 or identity is None:
            return False
    return True


def test_passes_notifications_health_and_logs(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    url = deploy.config.state.url
    daemon = start_daemon(WATCHDOG_USEC="200000")
    daemon.wait_for_notification("READY=1")
    daemon.wait_for_notification("WATCHDOG=1")
    daemon.wait_until(lambda: len(finished_passes(url)) >= 3, "three finished passes")
    daemon.wait_until(
        lambda: _all_provisioned(deploy, sandbox_users(6)), "the six users provisioned"
    )
    assert any(s.startswith("last pass at ") for s in daemon.notify.statuses())
    assert daemon.notify.lines().count("WATCHDOG=1") >= 2

    health = deploy.syncd("health")
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.strip().endswith("healthy")

    passes = finished_passes(url)
    assert {run.pid for run in passes} == {daemon.process.pid}
    assert all(run.outcome == "ok" for run in passes), [(r.id, r.outcome) for r in passes]

    assert daemon.stop() == 0
    assert "STOPPING=1" in daemon.notify.lines()

    # Logs: JSON lines off a terminal, with the pass id and the user; never a secret.
    records = _json_lines(daemon.log())
    assert {"time", "level", "logger", "message"} <= set(records[0])
    per_user = [r for r in records if r.get("user") and r.get("pass_id")]
    assert {r["user"] for r in per_user} >= set(sandbox_users(6)), per_user[:3]
    wrapping_key = Path(str(deploy.config.kacls.wrapping_key.file)).read_bytes()
    service_key = json.loads(Path(str(deploy.config.google.service_account_key.file)).read_text())
    text = daemon.log()
    for secret in (
        base64.b64encode(wrapping_key).decode(),
        wrapping_key.hex(),
        service_key["private_key_id"],
        "PRIVATE KEY",
    ):
        assert secret not in text


def test_sighup_keeps_running_on_a_broken_configuration_and_takes_a_good_one(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    deploy = daemon_deployment
    url = deploy.config.state.url
    daemon = start_daemon()
    daemon.wait_for_notification("READY=1")
    daemon.wait_until(lambda: finished_passes(url), "a first pass")
    good = deploy.config_path.read_text()

    deploy.config_path.write_text(good + "\nschedule: {interval: every now and then}\n")
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: "reload refused" in daemon.log(), "the reload refused")
    assert "schedule.interval: not a duration" in daemon.log()
    assert daemon.running()
    before = len(finished_passes(url))
    daemon.wait_until(
        lambda: len(finished_passes(url)) >= before + 2, "passes on the old configuration"
    )

    # A good new configuration: another users file listing two more users.
    more_users = tmp_path / "more-users.yaml"
    emails = sandbox_users(8)
    more_users.write_text(
        yaml.safe_dump({"users": [{"email": e, "id": f"id-{e}", "enabled": True} for e in emails]})
    )
    data = yaml.safe_load(good)
    data["directory"]["static"]["path"] = str(more_users)
    deploy.config_path.write_text(yaml.safe_dump(data))
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: "configuration reloaded" in daemon.log(), "the reload")
    daemon.wait_until(lambda: _all_provisioned(deploy, emails), "the two new users provisioned")
    assert daemon.stop() == 0
    assert daemon.notify.lines().count("RELOADING=1") == 2


def test_run_refuses_to_start_without_its_issuing_ca(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    daemon_deployment.update_config(ca={"label": "never-imported"})
    daemon = start_daemon()
    code = daemon.process.wait(timeout=90)
    assert code == 2, daemon.log()
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("syncd: "), lines
    assert "never-imported" in lines[0]
    assert "READY=1" not in daemon.notify.lines()
    assert finished_passes(daemon_deployment.config.state.url) == []


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_watchdog_pings_only_while_the_pass_makes_progress(
    daemon_deployment: Deployment, start_daemon: Callable[..., RunningDaemon]
) -> None:
    deploy = daemon_deployment
    deploy.set_users(sandbox_users(1))
    deploy.update_config(daemon={"stall_timeout": "0.5s"})
    deploy.admin("POST", "faults", {"latency_ms": 5000})  # each Gmail request takes 5 s
    daemon = start_daemon(WATCHDOG_USEC="200000")
    daemon.wait_for_notification("WATCHDOG=1")

    def stalled() -> bool:
        text = daemon.log()
        return text.rfind("has finished no step for") > text.rfind("makes progress again")

    # The upload's stall, not a short one while the pass reads and plans on a busy machine.
    daemon.wait_until(lambda: stalled() and (time.sleep(0.5) or stalled()), "a lasting stall")
    pings = daemon.notify.lines().count("WATCHDOG=1")
    time.sleep(1.0)
    assert daemon.notify.lines().count("WATCHDOG=1") == pings, "pinged while stalled"
    assert any(s.startswith("stalled: no step finished") for s in daemon.notify.statuses())

    deploy.admin("POST", "faults", {})
    daemon.wait_until(
        lambda: daemon.notify.lines().count("WATCHDOG=1") > pings + 2, "pings once it moves on"
    )
    assert "the pass makes progress again" in daemon.log()
    assert daemon.stop() == 0


# --- start-up: a database that is not there yet, a master key that is not the store's -------


class OwnPostgres:
    """A PostgreSQL server of this test's own, to stop and start (the session's is shared)."""

    def __init__(self, base: Path) -> None:
        from ..conftest import _free_port, _postgres_bindir, _Runner

        bindir = _postgres_bindir()
        assert bindir is not None, "PostgreSQL server binaries not found"
        self.runner = _Runner(bindir)
        self.data, self.log, self.sockets = base / "data", base / "server.log", base / "sockets"
        self.sockets.mkdir(parents=True)
        for path in (base, self.sockets):
            self.runner.give(path)
        done = self.runner.run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        assert done.returncode == 0, done.stderr
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.sockets} -c fsync=off"
        )
        done = self.runner.run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start"
        )
        assert done.returncode == 0, done.stderr + self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.runner.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    base = Path(tempfile.mkdtemp(prefix="syncd-own-pg-"))
    server = OwnPostgres(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _move_state_to(deploy: Deployment, url: str) -> None:
    """Point the deployment at an empty PostgreSQL database: schema, issuing CA, master key."""
    from datetime import UTC, datetime

    from syncd.credentials.issuers import import_issuer
    from syncd.state.db import Database

    from ..pipeline.conftest import P12_PASSWORD

    Database.open(url, require_current=False).upgrade()
    deploy.update_config(state={"url": url})
    app = deploy.app()
    assert deploy.hierarchy.issuer_p12 is not None and deploy.hierarchy.root_pem is not None
    import_issuer(
        app.database.sessions,
        app.key_manager(),
        label="pipeline",
        pkcs12_data=deploy.hierarchy.issuer_p12.read_bytes(),
        password=P12_PASSWORD,
        extra_chain_pem=deploy.hierarchy.root_pem.read_bytes(),
        now=datetime.now(UTC),
        where="issuer.p12",
    )
    app.database.close()


def _waiting(daemon: RunningDaemon) -> bool:
    return any(s.startswith("waiting for a dependency") for s in daemon.notify.statuses())


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_run_waits_for_a_database_that_starts_late(
    daemon_deployment: Deployment,
    start_daemon: Callable[..., RunningDaemon],
    own_postgres: OwnPostgres,
) -> None:
    deploy = daemon_deployment
    own_postgres.start()
    _move_state_to(deploy, own_postgres.url)
    own_postgres.stop()

    # Stopped while waiting: exit 0 at once, no pass.
    daemon = start_daemon()
    daemon.wait_until(lambda: _waiting(daemon), "STATUS=waiting for a dependency")
    assert "EXTEND_TIMEOUT_USEC" in "\n".join(daemon.notify.lines())
    assert daemon.stop(timeout=10) == 0
    assert "READY=1" not in daemon.notify.lines()

    # The database starts while syncd run waits: it carries on.
    daemon = start_daemon()
    daemon.wait_until(lambda: "waiting" in daemon.log() and _waiting(daemon), "a second wait")
    assert "the database" in daemon.log() and "is unavailable" in daemon.log()
    own_postgres.start()
    daemon.wait_for_notification("READY=1")

    # The database goes away while the service runs: each pass fails with one line, no
    # traceback, and the service stays up.
    own_postgres.stop()
    daemon.wait_until(
        lambda: "pass failed: state.url: the database" in daemon.log(), "a pass failing"
    )
    text = daemon.log()
    assert "Traceback" not in text, text[text.find("Traceback") - 300 :][:4000]
    own_postgres.start()

    # A master key other than the store's: a reload is refused and passes refuse to run.
    master = Path(str(deploy.config.kms.local.master_key_file))
    right = master.read_bytes()
    master.write_bytes(os.urandom(32))
    daemon.send(signal.SIGHUP)
    daemon.wait_until(lambda: "reload refused" in daemon.log(), "the reload refused")
    assert "kms.local.master_key_file" in daemon.log().split("reload refused", 1)[1]
    assert daemon.stop() == 0

    refused = start_daemon()
    assert refused.process.wait(timeout=90) == 2, refused.log()
    lines = [line for line in refused.log().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("syncd: "), lines
    assert "kms.local.master_key_file" in lines[0] and "is not the master key" in lines[0]
    master.write_bytes(right)


def test_unit_restarts_when_a_dependency_is_unavailable() -> None:
    """Exit 2 (fix the configuration) stops restarts; exit 4 (database down) does not, and no
    ExecStartPre check fails the start while the database is still coming up."""
    unit = (Path(__file__).resolve().parents[2] / "systemd" / "syncd.service").read_text()
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    assert "Restart=on-failure" in settings
    assert [s for s in settings if s.startswith("RestartPreventExitStatus=")] == [
        "RestartPreventExitStatus=2"
    ]
    assert not [s for s in settings if s.startswith("ExecStartPre=") and "config check" in s]
