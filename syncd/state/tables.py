"""ORM-free views of the tables that the read-only commands query (status, history, health).

Loading the ORM and the declarative models takes about a quarter of a second, more than the
queries of ``syncd status`` or ``syncd health`` themselves. These lightweight Core ``table()``
constructs name only the columns those queries read, with the models' column types, so values
come back as the models give them (UTC datetimes, enum members, booleans, JSON).
tests/state/test_tables.py keeps every column equal in name and type to
:mod:`syncd.state.models`.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Integer, String, Text, column, table

from syncd.domain import KeyPairStatus, TaskKind, TaskStatus
from syncd.state.types import UTCDateTime, enum_type

users = table(
    "users",
    column("id", Integer),
    column("email", String),
    column("in_scope", Boolean),
    column("enabled", Boolean),
    column("last_seen", UTCDateTime()),
    column("deprovisioned_at", UTCDateTime()),
)

key_pairs = table(
    "key_pairs",
    column("user_id", Integer),
    column("generation", Integer),
    column("status", enum_type(KeyPairStatus)),
    column("not_after", UTCDateTime()),
    column("gmail_key_pair_id", String),
    column("private_key_format", String),
    column("kms_backend", String),
)

tasks = table(
    "tasks",
    column("user_id", Integer),
    column("kind", enum_type(TaskKind)),
    column("status", enum_type(TaskStatus)),
    column("next_step", String),
    column("attempts", Integer),
    column("next_attempt_at", UTCDateTime()),
    column("last_error", Text),
    column("permanent", Boolean),
    column("claimed_by", Integer),
    column("lease_until", UTCDateTime()),
)

instances = table(
    "instances",
    column("id", Integer),
    column("host", String),
    column("pid", Integer),
    column("started_at", UTCDateTime()),
    column("heartbeat_at", UTCDateTime()),
    column("workers", Integer),
)

runs = table(
    "runs",
    column("id", Integer),
    column("kind", String),
    column("started_at", UTCDateTime()),
    column("finished_at", UTCDateTime()),
    column("outcome", String),
    column("summary", JSON),
    column("host", String),
    column("pid", Integer),
    column("pid_namespace", String),
)

audit_log = table(
    "audit_log",
    column("id", Integer),
    column("at", UTCDateTime()),
    column("run_id", Integer),
    column("user_id", Integer),
    column("email", String),
    column("action", String),
    column("detail", JSON),
)
