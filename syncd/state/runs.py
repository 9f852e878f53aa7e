"""Runs: one row per pass or command that acted, with its outcome and counts."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from syncd.state.lock import pid_namespace
from syncd.state.models import Run


def start_run(session: Session, kind: str, now: datetime) -> int:
    run = Run(
        kind=kind,
        started_at=now,
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_namespace=pid_namespace(),
        summary={},
    )
    session.add(run)
    session.flush()
    return run.id


def finish_run(
    session: Session, run_id: int, outcome: str, now: datetime, summary: dict[str, Any]
) -> None:
    run = session.get_one(Run, run_id)
    run.finished_at = now
    run.outcome = outcome
    run.summary = summary
