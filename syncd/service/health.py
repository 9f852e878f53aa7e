"""``syncd health``: is this installation doing its job? For monitoring systems that poll.

Healthy means both:
- the state store is reachable and its schema current;
- the last sync pass finished within ``daemon.health_max_age`` (default: three schedule
  intervals plus the jitter; 25 hours with cron-only schedules) and did its job: it could read
  the directory (not ``source_failed``), did not crash (not ``error``), was not blocked (a
  mass deprovision refused: ``blocked``), and did not fail every user it touched (Google or
  the KMS unreachable); and no pass started after it was left unfinished by a process that
  died (killed, out of memory, a hard exit). Some users failing among others done is reported
  by ``syncd status``, not here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, text

from syncd.config import Config
from syncd.errors import SyncdError
from syncd.state.db import Database
from syncd.state.lock import pid_alive, pid_namespace
from syncd.state.tables import runs

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


class Pass(Protocol):
    """What the checks read of a pass: a row of ``runs`` (a models.Run or a :class:`PassRow`)."""

    @property
    def id(self) -> int: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def finished_at(self) -> datetime | None: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def summary(self) -> dict[str, Any]: ...
    @property
    def host(self) -> str: ...
    @property
    def pid(self) -> int: ...


@dataclass(frozen=True)
class PassRow:
    """A sync pass as read from ``runs`` with SQLAlchemy Core (no ORM to load)."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    summary: dict[str, Any]
    host: str
    pid: int
    pid_namespace: str | None


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


def judge_finished(run: Pass, age: float, limit: float) -> Check:
    """The "last pass" check for the last finished sync pass, ``age`` seconds after it ended."""
    summary = run.summary or {}
    described = f"pass {run.id} finished {_ago(age)} ({run.outcome})"
    if age > limit:
        return Check("last pass", False, f"{described}; older than {limit:.0f}s")
    if run.outcome == "source_failed":
        error = summary.get("error", "unknown error")
        return Check("last pass", False, f"{described}: the directory could not be read: {error}")
    if run.outcome == "error":
        error = summary.get("error", "unknown error")
        return Check("last pass", False, f"{described}: the pass crashed: {error}")
    if run.outcome == "lock_lost":
        return Check(
            "last pass",
            False,
            f"{described}: it lost the run lock to another syncd process and stopped; check "
            "that only one syncd runs against this state store and that its database "
            "connection stays up",
        )
    if run.outcome == "blocked":
        count = summary.get("blocked_deprovisions", "some")
        return Check(
            "last pass",
            False,
            f"{described}: deprovisioning {count} user(s) was refused as a mass deprovision "
            "(policy.max_deprovision); see `syncd plan`, then fix the directory or run "
            "`syncd sync --once --allow-mass-deprovision`",
        )
    failed, done = summary.get("failed", 0), summary.get("done", 0)
    if run.outcome == "failures" and isinstance(failed, int) and failed > 0 and not done:
        return Check(
            "last pass",
            False,
            f"{described}: every user it touched failed ({failed} failed, none done): "
            "Google or the KMS may be unreachable; see `syncd status`",
        )
    return Check("last pass", True, described)


def process_alive(pid: int, namespace: str | None) -> bool | None:
    """Whether process ``pid`` of PID ``namespace`` (``runs.pid_namespace``) still runs; None
    when that cannot be told from here (another host, container or boot)."""
    if namespace is None or namespace != pid_namespace() or pid <= 0:
        return None
    return pid_alive(pid)


def abandoned(
    open_runs: list[PassRow], now: datetime, limit: float, *, shared: bool = False
) -> list[PassRow]:
    """Unfinished passes whose process is gone. Alone, passes never run two at once, so any
    but the newest is gone; in a shared group (``shared``) instances' passes overlap, so each
    is judged as the newest is: gone when its process is known to be, or, when that cannot be
    told from here, when it has run longer than ``limit``."""
    judged = open_runs if shared else open_runs[-1:]
    gone = [] if shared else list(open_runs[:-1])
    for run in judged:
        alive = process_alive(run.pid, run.pid_namespace)
        if alive is None:
            alive = (now - run.started_at).total_seconds() <= limit
        if not alive:
            gone.append(run)
    return gone


_PASS_COLUMNS = [runs.c[name] for name in PassRow.__dataclass_fields__]


def _last_pass(database: Database, config: Config, now: datetime) -> Check:
    sync = runs.c.kind == "sync"
    with database.engine.connect() as connection:
        last = (
            connection.execute(
                select(*_PASS_COLUMNS)
                .where(sync, runs.c.finished_at.is_not(None))
                .order_by(runs.c.finished_at.desc(), runs.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        run = PassRow(**last) if last is not None else None
        later = select(*_PASS_COLUMNS).where(sync, runs.c.finished_at.is_(None))
        if run is not None:
            later = later.where(runs.c.id > run.id)
        found = connection.execute(later.order_by(runs.c.id)).mappings()
        open_runs = [PassRow(**row) for row in found]
    limit = max_age(config)
    dead = abandoned(open_runs, now, limit, shared=config.state.shared)
    if dead:
        first = dead[0]
        more = f" ({len(dead)} such passes)" if len(dead) > 1 else ""
        return Check(
            "last pass",
            False,
            f"pass {first.id} started {_ago((now - first.started_at).total_seconds())} on "
            f"{first.host or 'an unknown host'} (pid {first.pid}) and never finished: its "
            f"process died or was killed{more}; see the service's log",
        )
    running = [r for r in open_runs if r not in dead]
    if run is None or run.finished_at is None:
        if running:
            return Check("last pass", False, f"pass {running[-1].id} running; none finished yet")
        return Check("last pass", False, "no sync pass has finished yet")
    check = judge_finished(run, (now - run.finished_at).total_seconds(), limit)
    if running:
        since = _ago((now - running[-1].started_at).total_seconds()).removesuffix(" ago")
        detail = f"{check.detail}; pass {running[-1].id} running for {since}"
        check = Check(check.name, check.ok, detail)
    return check


def check_health(config: Config, now: datetime) -> Health:
    try:
        database = Database.open(config.state.url, require_current=True)
    except SyncdError as error:
        return Health([Check("database", False, str(error))])
    try:
        try:
            with database.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as error:  # the driver's errors, reported as the check's detail
            return Health([Check("database", False, f"{database.display_url}: {error}")])
        checks = [Check("database", True, database.display_url)]
        checks.append(_last_pass(database, config, now))
        return Health(checks)
    finally:
        database.close()
