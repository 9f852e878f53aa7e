"""A state store (SQLite and PostgreSQL) filled with a known mix of users, and a way to run
the real ``syncd`` executable against it.

The store is filled through the pipeline's own functions (directory snapshot, plan actions
turned into tasks, step outcomes recorded with their checkpoints, failures, runs), the same
calls a pass makes; only the external calls (KMS, CA, Gmail) are left out.

The mix, ``NOW`` being the time the fixture runs:

| user | directory | what happened | certificate expires |
| --- | --- | --- | --- |
| a1..a6 | enabled | provisioned | a1 +5d, a2 +20d, a3 +45d, a4 a5 +200d, a6 -2d (expired) |
| r1 | enabled | provisioned, then renewed | +300d (generation 2) |
| f1 | enabled | provision failed at issue_certificate, once | |
| f2 | enabled | provision failed at create_key, twice | |
| p1 | enabled | provision pending (not started) | |
| d1 | disabled | provisioned, then deprovisioned | |
| gone | left the directory | provisioned, then deprovisioned | |
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.orm import Session

from syncd.directory.base import DirectoryUser, Snapshot
from syncd.pipeline import plan_state, tasks
from syncd.pipeline.claims import Claim
from syncd.pipeline.enqueue import enqueue
from syncd.pipeline.steps import Outcome
from syncd.plan import Action, ActionKind, ReasonCode
from syncd.state.db import Database
from syncd.state.models import KeyPairStatus
from syncd.state.runs import finish_run, start_run
from tests.support.cli import run_syncd

DOMAIN = "example.com"
ENABLED = ["a1", "a2", "a3", "a4", "a5", "a6", "r1", "f1", "f2", "p1"]
EXPIRES_IN_DAYS = {"a1": 5, "a2": 20, "a3": 45, "a4": 200, "a5": 200, "a6": -2, "r1": 300}


CODES = {
    ActionKind.PROVISION: ReasonCode.NEW_IN_SCOPE,
    ActionKind.RENEW: ReasonCode.EXPIRING,
    ActionKind.DEPROVISION: ReasonCode.LEFT_SCOPE,
    ActionKind.RESUME: ReasonCode.TASK_INTERRUPTED,
    ActionKind.RETRY: ReasonCode.BACKOFF_ELAPSED,
    ActionKind.REPAIR: ReasonCode.RESYNC_REPAIR,
    ActionKind.REPLACE: ReasonCode.RESYNC_REPLACE,
}
"""The reason code each kind of action the fill enqueues carries (as the plan gives them)."""


def email(name: str) -> str:
    return f"{name}@{DOMAIN}"


def _snapshot(now: datetime, enabled: Sequence[str], disabled: Sequence[str]) -> Snapshot:
    users = [DirectoryUser(email(n), f"id-{n}", True) for n in enabled]
    users += [DirectoryUser(email(n), f"id-{n}", False) for n in disabled]
    return Snapshot("static", now, tuple(users))


def _outcome(
    kind: str, step: str, work: Any, not_after: datetime | None, now: datetime
) -> Outcome:
    """What the real step would record (KMS ids, certificate validity, statuses)."""
    outcome = Outcome(audit={"step": step})
    target = work.target
    if step == "create_key":
        outcome.update(target.id, kms_private_key_id=f"k-{target.id}", key_bits=2048)
    elif step == "issue_certificate":
        outcome.update(
            target.id,
            not_before=now - timedelta(days=1),
            not_after=not_after,
            fingerprint_sha256=f"{target.id:064x}",
        )
    elif step == "upload_keypair":
        outcome.update(target.id, gmail_key_pair_id=f"gmail-{target.id}")
    elif step == "insert_identity":
        outcome.update(target.id, status=KeyPairStatus.ACTIVE)
        for other in work.others:
            if other.status is KeyPairStatus.ACTIVE:
                outcome.update(other.id, status=KeyPairStatus.SUPERSEDED)
    elif step == "disable_keypairs":
        for other in (*work.others, *([target] if target else [])):
            if other.status in (KeyPairStatus.ACTIVE, KeyPairStatus.SUPERSEDED):
                outcome.update(other.id, status=KeyPairStatus.DISABLED)
    return outcome


@dataclass
class Filler:
    """Drives tasks through the pipeline's state functions."""

    database: Database
    run_id: int
    claim: Claim = field(default_factory=lambda: Claim(0, timedelta(minutes=10)))
    """Token 0: the store's own until a run lock is taken, which these fixtures never do."""

    def enqueue(self, name: str, action: ActionKind, task_kind: str) -> int:
        with self.database.transaction() as session:
            [task_id] = enqueue(
                session,
                [Action(email(name), action, f"test: {task_kind}", task_kind, f"id-{name}",
                        CODES[action])],
                self.run_id,
                datetime.now(UTC),
            )
        return task_id

    def run(
        self,
        task_id: int,
        *,
        not_after: datetime | None = None,
        fail_at: str | None = None,
        error: str = "",
    ) -> None:
        with self.database.engine.begin() as connection:
            work, step = tasks.start(
                connection, task_id, self.run_id, self.claim, datetime.now(UTC)
            )
        while step is not None:
            now = datetime.now(UTC)
            if step == fail_at:
                with self.database.transaction() as session:
                    tasks.fail(
                        session, task_id, error, now, self.run_id, 60.0, 3600.0, self.claim
                    )
                return
            outcome = _outcome(work.kind, step, work, not_after, now)
            with self.database.engine.begin() as connection:
                step = tasks.record_step(
                    connection, work, step, outcome, now, self.run_id, self.claim
                )
            work = work.after(outcome)

    def retry(self, task_id: int, fail_at: str, error: str) -> None:
        """A later pass retries a failed task and it fails again."""
        with self.database.transaction() as session:
            enqueue(
                session,
                [Action(self._email_of(session, task_id), ActionKind.RETRY, "retry", "provision",
                        code=ReasonCode.BACKOFF_ELAPSED)],
                self.run_id,
                datetime.now(UTC),
            )
        self.run(task_id, fail_at=fail_at, error=error)

    @staticmethod
    def _email_of(session: Session, task_id: int) -> str:
        from syncd.state.models import Task

        return session.get_one(Task, task_id).user.email


@dataclass
class Store:
    url: str
    now: datetime
    root: Path

    def database(self) -> Database:
        return Database.open(self.url)

    def config(self, **report: Any) -> Path:
        path = self.root / "syncd.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "state": {"url": self.url},
                    "logging": {"format": "text"},
                    "report": report,
                }
            )
        )
        return path

    def syncd(
        self, *args: str, config: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_syncd(
            ["--config", str(config or self.config()), *args], env={**os.environ, **(env or {})}
        )


def fill(database: Database) -> None:
    """Write the mix of the module docstring into ``database``."""
    start = datetime.now(UTC)
    with database.transaction() as session:
        run_id = start_run(session, "sync", start)
        snapshot = _snapshot(start, [*ENABLED, "d1", "gone"], [])
        plan_state.record_snapshot(session, snapshot, start, None)
    filler = Filler(database, run_id)
    for name in ["a1", "a2", "a3", "a4", "a5", "a6", "r1", "d1", "gone"]:
        days = EXPIRES_IN_DAYS.get(name, 365)
        task_id = filler.enqueue(name, ActionKind.PROVISION, "provision")
        filler.run(task_id, not_after=start + timedelta(days=days))
    f1 = filler.enqueue("f1", ActionKind.PROVISION, "provision")
    filler.run(f1, fail_at="issue_certificate", error="CA refused: <script>x</script> & co")
    f2 = filler.enqueue("f2", ActionKind.PROVISION, "provision")
    filler.run(f2, fail_at="create_key", error="KMS unreachable")
    filler.retry(f2, "create_key", "KMS unreachable again")
    filler.enqueue("p1", ActionKind.PROVISION, "provision")
    # r1 renews to a second generation; d1 is disabled and gone leaves: both deprovisioned.
    renew = filler.enqueue("r1", ActionKind.RENEW, "renew")
    filler.run(renew, not_after=start + timedelta(days=EXPIRES_IN_DAYS["r1"]))
    with database.transaction() as session:
        later = datetime.now(UTC)
        plan_state.record_snapshot(session, _snapshot(later, ENABLED, ["d1"]), later, run_id)
    for name in ("d1", "gone"):
        filler.run(filler.enqueue(name, ActionKind.DEPROVISION, "deprovision"))
    with database.transaction() as session:
        finish_run(session, run_id, "failures", datetime.now(UTC), {"done": 12, "failed": 2})


@pytest.fixture
def store(migrated_db_url: str, tmp_path: Path) -> Store:
    database = Database.open(migrated_db_url)
    try:
        fill(database)
    finally:
        database.close()
    return Store(migrated_db_url, datetime.now(UTC), tmp_path)
