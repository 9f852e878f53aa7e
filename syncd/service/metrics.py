"""Prometheus metrics of ``syncd run``, on their own registry, served when ``metrics.listen``
is set.

Pass duration and outcome, step latencies and Google/KMS errors are observed as they happen;
users by state, certificates expiring soon and drift (active credentials changed outside
syncd, by reason code: those awaiting repair, and the drifts found since the daemon started)
are read from the state store after each pass (so a scrape never touches the database).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from datetime import UTC, datetime, timedelta
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from sqlalchemy import func, select

from syncd.domain import KeyPairStatus, ReasonCode
from syncd.errors import ConfigError, KMSError
from syncd.google.errors import GoogleAPIError
from syncd.pipeline.runner import TaskResult
from syncd.plan import Plan
from syncd.report.drift import DRIFT_FOUND
from syncd.state.db import Database
from syncd.state.models import AuditEvent, KeyPair
from syncd.state.queries import instance_status, user_status

log = logging.getLogger("syncd.metrics")

PASS_OUTCOMES = (
    "ok",
    "failures",
    "blocked",
    "stopped",
    "source_failed",
    "error",
    "locked",
    "lock_lost",
)
USER_STATES = ("active", "failed", "deprovisioned", "not provisioned", "out of scope")
DRIFT_CODES = tuple(code.value for code in ReasonCode if code.value.startswith("drift_"))
_STEP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PASS_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def google_error_kind(error: GoogleAPIError) -> str:
    """A small, stable label: Google's canonical reason, else the HTTP status, else no_answer."""
    if error.reason:
        return error.reason
    return str(error.status) if error.status is not None else "no_answer"


def _code(code: ReasonCode | None) -> str:
    return code.value if code is not None else "none"


class Metrics:
    """The daemon's metrics; every method is thread-safe (prometheus-client's are)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes = Counter("syncd_passes", "Sync passes by outcome.", ["outcome"], registry=r)
        self.pass_duration = Histogram(
            "syncd_pass_duration_seconds",
            "Duration of sync passes.",
            buckets=_PASS_BUCKETS,
            registry=r,
        )
        self.last_pass = Gauge(
            "syncd_last_pass_end_timestamp_seconds",
            "When the last sync pass ended (Unix time).",
            registry=r,
        )
        self.last_pass_ok = Gauge(
            "syncd_last_pass_success", "1 if the last pass's outcome was ok, else 0.", registry=r
        )
        self.tasks = Counter(
            "syncd_tasks", "Tasks finished by kind and result.", ["kind", "result"], registry=r
        )
        self.steps = Histogram(
            "syncd_step_duration_seconds",
            "Latency of pipeline step attempts by step and result.",
            ["step", "result"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.google_errors = Counter(
            "syncd_google_errors",
            "Google API errors seen by the pipeline steps (after the client's retries), by kind.",
            ["kind"],
            registry=r,
        )
        self.kms_errors = Counter(
            "syncd_kms_errors",
            "KMS errors seen by the pipeline steps, by kind.",
            ["kind"],
            registry=r,
        )
        self.users = Gauge(
            "syncd_users", "Users in the state store by state.", ["state"], registry=r
        )
        self.expiring = Gauge(
            "syncd_certificates_expiring_soon",
            "Active certificates expiring within report.expiring_days.",
            registry=r,
        )
        self.expiring_window = Gauge(
            "syncd_certificates_expiring_window_days",
            "The window of syncd_certificates_expiring_soon, in days.",
            registry=r,
        )
        self.drift = Gauge(
            "syncd_drift_users",
            "Active credentials changed outside syncd and not repaired yet, by reason code.",
            ["code"],
            registry=r,
        )
        self.drift_found = Counter(
            "syncd_drift_found",
            "Drifts found by the rotating verification since the daemon started, by reason code.",
            ["code"],
            registry=r,
        )
        self.actions = Counter(
            "syncd_actions",
            "Actions planned by sync passes, by kind and reason code (syncd.domain.ReasonCode).",
            ["kind", "code"],
            registry=r,
        )
        self.holds = Counter(
            "syncd_holds",
            "Users held (left alone) by sync passes, by reason code; deprovisions blocked by "
            "policy.max_deprovision count here too.",
            ["code"],
            registry=r,
        )
        self.instances_live = Gauge(
            "syncd_instances_live",
            "Live instances of the shared group (state.shared); 0 when not shared.",
            registry=r,
        )
        self.instance_claims = Gauge(
            "syncd_instance_claimed_tasks",
            "Tasks each instance of the shared group holds a live claim on (instance: host:pid).",
            ["instance"],
            registry=r,
        )
        self.up = Gauge(
            "syncd_up", "1 while the daemon is ready and scheduling passes.", registry=r
        )
        for outcome in PASS_OUTCOMES:
            self.passes.labels(outcome)
        for state in USER_STATES:
            self.users.labels(state)
        for code in DRIFT_CODES:
            self.drift.labels(code)
            self.drift_found.labels(code)
        self._known_states: set[str] = set(USER_STATES)
        self._started = datetime.now(UTC)
        self._drift_seen = 0
        """The last ``verify.verify_credential`` audit event counted in ``drift_found``."""
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.listening: str | None = None

    # --- observations -----------------------------------------------------------------------

    def observe_step(self, step: str, seconds: float, error: BaseException | None) -> None:
        self.steps.labels(step, "ok" if error is None else "error").observe(seconds)
        if isinstance(error, GoogleAPIError):
            self.google_errors.labels(google_error_kind(error)).inc()
        elif isinstance(error, KMSError):
            self.kms_errors.labels(type(error).__name__).inc()

    def observe_task(self, result: TaskResult) -> None:
        state = "stopped" if result.stopped else ("ok" if result.ok else "failed")
        self.tasks.labels(result.kind, state).inc()

    def observe_plan(self, plan: Plan) -> None:
        """A pass's plan: its actions by kind and code, its holds (and blocked deprovisions)
        by code."""
        for action in plan.actions:
            self.actions.labels(action.kind.value, _code(action.code)).inc()
        for hold in plan.held:
            self.holds.labels(_code(hold.code)).inc()
        if plan.blocked_deprovisions:
            self.holds.labels(_code(plan.blocked_code)).inc(len(plan.blocked_deprovisions))

    def observe_pass(self, outcome: str, seconds: float, ended: datetime) -> None:
        self.passes.labels(outcome).inc()
        self.pass_duration.observe(seconds)
        self.last_pass.set(ended.timestamp())
        self.last_pass_ok.set(1 if outcome == "ok" else 0)

    def refresh_state(self, database: Database, expiring_days: int, now: datetime) -> None:
        """Users by state and certificates expiring soon, read from the state store."""
        with database.sessions() as session:
            rows = user_status(session)
        states = Tally(str(row["state"]) for row in rows)
        for state in self._known_states | set(states):
            self.users.labels(state).set(states.get(state, 0))
        self._known_states |= set(states)
        horizon = now + timedelta(days=expiring_days)
        self.expiring.set(
            sum(
                1
                for row in rows
                if row["state"] == "active"
                and row["certificate_expires"] is not None
                and row["certificate_expires"] <= horizon
            )
        )
        self.expiring_window.set(expiring_days)
        self._refresh_drift(database)

    def refresh_instances(self, database: Database, now: datetime) -> None:
        """The shared group's live members and the tasks each holds (state.shared)."""
        with database.engine.connect() as connection:
            members = instance_status(connection, now)
        self.instances_live.set(sum(1 for m in members if m["live"]))
        self.instance_claims.clear()
        for member in members:
            self.instance_claims.labels(member["instance"]).set(member["claimed_tasks"])

    def _refresh_drift(self, database: Database) -> None:
        """Users with drift now, by code; the drifts audited since the last refresh counted
        (those of the daemon's own lifetime: a counter starts at zero with the process)."""
        with database.sessions() as session:
            now_drifting: dict[str, int] = {
                str(code): int(count)
                for code, count in session.execute(
                    select(KeyPair.drift, func.count())
                    .where(KeyPair.status == KeyPairStatus.ACTIVE, KeyPair.drift.is_not(None))
                    .group_by(KeyPair.drift)
                )
            }
            found = session.execute(
                select(AuditEvent.id, AuditEvent.detail)
                .where(
                    AuditEvent.action == DRIFT_FOUND,
                    AuditEvent.id > self._drift_seen,
                    AuditEvent.at >= self._started,
                )
                .order_by(AuditEvent.id)
            ).all()
        for code in set(DRIFT_CODES) | set(now_drifting):
            self.drift.labels(code).set(now_drifting.get(code, 0))
        for event_id, detail in found:
            self.drift_found.labels(str((detail or {}).get("drift") or "unknown")).inc()
            self._drift_seen = max(self._drift_seen, event_id)

    # --- the endpoint -----------------------------------------------------------------------

    def serve(self, listen: str | None) -> None:
        """Serve /metrics on ``HOST:PORT`` (stop serving when None); no-op if unchanged."""
        if listen == self.listening:
            return
        self.close()
        if listen is None:
            return
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        try:
            self._server, self._thread = start_http_server(int(port), host, registry=self.registry)
        except OSError as error:
            raise ConfigError(
                "metrics.listen", f"cannot listen on {listen}: {error.strerror}"
            ) from None
        self.listening = listen
        log.info("metrics served at http://%s/metrics", listen)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread, self.listening = None, None, None
