"""``syncd health``: is this installation doing its job? For monitoring systems that poll.

Healthy means both:
- the state store is reachable and its schema current;
- the last sync pass finished within ``daemon.health_max_age`` (default: three schedule
  intervals plus the jitter; 25 hours with cron-only schedules) and could read the directory
  (its outcome is not ``source_failed``). Per-user failures and blocked deprovisions are
  reported but do not make the installation unhealthy: ``syncd status`` lists them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select, text

from syncd.config import Config
from syncd.errors import SyncdError
from syncd.state.db import Database
from syncd.state.models import Run

CRON_ONLY_MAX_AGE = 25 * 3600.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Health:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {"healthy": self.ok, "checks": [asdict(check) for check in self.checks]}


def max_age(config: Config) -> float:
    """Seconds after which the last pass is too old."""
    if config.daemon.health_max_age is not None:
        return config.daemon.health_max_age
    if config.schedule.interval is not None:
        return 3 * config.schedule.interval + config.schedule.jitter
    return CRON_ONLY_MAX_AGE


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _last_pass(database: Database, config: Config, now: datetime) -> Check:
    with database.sessions() as session:
        run = session.scalars(
            select(Run)
            .where(Run.kind == "sync", Run.finished_at.is_not(None))
            .order_by(Run.finished_at.desc(), Run.id.desc())
            .limit(1)
        ).first()
    if run is None or run.finished_at is None:
        return Check("last pass", False, "no sync pass has finished yet")
    age = (now - run.finished_at).total_seconds()
    limit = max_age(config)
    described = f"pass {run.id} finished {_ago(age)} ({run.outcome})"
    if age > limit:
        return Check("last pass", False, f"{described}; older than {limit:.0f}s")
    if run.outcome == "source_failed":
        error = (run.summary or {}).get("error", "unknown error")
        return Check("last pass", False, f"{described}: the directory could not be read: {error}")
    return Check("last pass", True, described)


def check_health(config: Config, now: datetime) -> Health:
    try:
        database = Database.open(config.state.url, require_current=True)
    except SyncdError as error:
        return Health([Check("database", False, str(error))])
    try:
        try:
            with database.sessions() as session:
                session.execute(text("SELECT 1"))
        except Exception as error:  # the driver's errors, reported as the check's detail
            return Health([Check("database", False, f"{database.display_url}: {error}")])
        checks = [Check("database", True, database.display_url)]
        checks.append(_last_pass(database, config, now))
        return Health(checks)
    finally:
        database.close()
