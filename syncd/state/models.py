"""The state store's tables, as typed SQLAlchemy 2 declarative models.

The schema changes only through the Alembic migrations in ``migrations/``; these models are
what the migrations must produce (a test compares the two).

Nothing here holds key material in clear: the local KMS stores private keys only as
AES-256-GCM ciphertext (``KmsKey.sealed_private_key``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The vocabulary lives in syncd.domain; re-exported here for the modules that import it from
# the models.
from syncd.domain import KeyPairStatus as KeyPairStatus
from syncd.domain import KmsKeyState as KmsKeyState
from syncd.domain import TaskKind as TaskKind
from syncd.domain import TaskStatus as TaskStatus
from syncd.state.types import UTCDateTime as UTCDateTime
from syncd.state.types import enum_type as _enum

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A person the directory has listed at some point; kept after they leave, for history."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    directory_id: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(32))
    in_scope: Mapped[bool] = mapped_column(default=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deprovisioned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    missing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """First of the consecutive directory reads that did not list the user (None: listed, or
    named by an unusable entry); ``policy.deprovision_after`` counts from here."""
    previous_email: Mapped[str | None] = mapped_column(String(320))
    """The address before the last rename (same directory id, new address)."""
    aliases: Mapped[list[str] | None] = mapped_column(JSON)
    """The user's other addresses as the last directory read gave them (None: not read)."""

    key_pairs: Mapped[list[KeyPair]] = relationship(
        back_populates="user", order_by="KeyPair.generation"
    )
    tasks: Mapped[list[Task]] = relationship(back_populates="user", order_by="Task.id")


class SkippedDirectoryEntry(Base):
    """A directory entry skipped by the last read: audited when it appears and when it goes."""

    __tablename__ = "skipped_entries"
    __table_args__ = (UniqueConstraint("source", "entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    entry: Mapped[str] = mapped_column(String(512))
    """Where the entry is (``users.csv line 7``, a DN, a Google id), as the source names it."""
    reason: Mapped[str] = mapped_column(Text)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KeyPair(Base):
    """One generation of a user's credential: KMS key, certificate, Gmail key pair."""

    __tablename__ = "key_pairs"
    __table_args__ = (UniqueConstraint("user_id", "generation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    status: Mapped[KeyPairStatus] = mapped_column(
        _enum(KeyPairStatus), default=KeyPairStatus.PENDING
    )
    kms_label: Mapped[str] = mapped_column(String(255))
    kms_private_key_id: Mapped[str | None] = mapped_column(String(255))
    kms_public_key_id: Mapped[str | None] = mapped_column(String(255))
    key_bits: Mapped[int | None] = mapped_column(Integer)
    certificate_pem: Mapped[str | None] = mapped_column(Text)
    fingerprint_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    serial_hex: Mapped[str | None] = mapped_column(String(64))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    gmail_key_pair_id: Mapped[str | None] = mapped_column(String(255))
    private_key_format: Mapped[str | None] = mapped_column(String(16))
    """pkcs1 or pkcs8: how the kaclsData uploaded to Gmail holds the private key (None until
    uploaded; rows from before revision 0005 are pkcs8)."""
    kms_backend: Mapped[str] = mapped_column(String(32), default="local", server_default="local")
    """The KMS backend (``kms.backend``) that holds the key: it wraps and revokes it, whatever
    the configured backend is now. Set by create_key; rows from before 0007 are local."""
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When a pass last found the key pair whole in Gmail and the KMS."""
    drift: Mapped[str | None] = mapped_column(String(64))
    """The ReasonCode of the drift the last verification found (None: none)."""
    drift_detail: Mapped[str | None] = mapped_column(Text)
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """What the certificate was issued with (syncd.plan.DesiredProfile.record)."""
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    origin: Mapped[str] = mapped_column(String(16), default="syncd", server_default="syncd")
    """``syncd`` (made by syncd) or ``adopted`` (made by hand, taken over)."""
    alias_identities: Mapped[dict[str, str] | None] = mapped_column(JSON)
    """``{alias: "inserted" | "refused: <Gmail's message>"}`` for the user's aliases."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="key_pairs")


class Run(Base):
    """One pass (or one command) that acted on the state."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    pid_namespace: Mapped[str | None] = mapped_column(String(100))
    """As ``Instance.pid_namespace``: whether ``pid`` can be looked up from here."""


class Task(Base):
    """A persistent unit of work for one user: its kind, checkpoint and retry bookkeeping."""

    __tablename__ = "tasks"
    __table_args__ = (
        # At most one unfinished task per user: the runner works one task per user at a time.
        Index(
            "uq_tasks_open_user",
            "user_id",
            unique=True,
            sqlite_where=text("status IN ('pending', 'running', 'failed')"),
            postgresql_where=text("status IN ('pending', 'running', 'failed')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[TaskKind] = mapped_column(_enum(TaskKind))
    status: Mapped[TaskStatus] = mapped_column(
        _enum(TaskStatus), default=TaskStatus.PENDING, index=True
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    next_step: Mapped[str | None] = mapped_column(String(64))
    key_pair_id: Mapped[int | None] = mapped_column(ForeignKey("key_pairs.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    permanent: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Failed for a reason retrying will not fix: no next attempt; held until a resync."""
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    """Done or cancelled at; deleted state.keep_finished_tasks later (syncd.state.retention)."""
    claimed_by: Mapped[int | None] = mapped_column(Integer)
    """Who runs the task: the run-lock token of its pass (see RunLockState), or in a shared
    group (``state.shared``) the id of the instance that claimed it (see Instance)."""
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """While running, no other pass touches the task before this time (renewed at each step)."""

    user: Mapped[User] = relationship(back_populates="tasks")
    key_pair: Mapped[KeyPair | None] = relationship()


class RunLockState(Base):
    """The run lock's fencing token: one row, incremented by every acquisition of the lock.

    Each checkpoint proves in its own transaction that the token is still the one its pass
    took, so a pass that lost the lock to another cannot record anything more.
    """

    __tablename__ = "run_lock"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[int] = mapped_column(Integer, default=0)
    holder: Mapped[str] = mapped_column(String(255), default="")
    """``pid=<pid> host=<host>`` of the process that took the token."""
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """Append-only record of every action on every user (the database refuses edits)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Issuer(Base):
    """An imported issuing CA: its key lives in the KMS, its chain here."""

    __tablename__ = "issuers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(String(255), unique=True)
    kms_private_key_id: Mapped[str] = mapped_column(String(255))
    kms_backend: Mapped[str] = mapped_column(String(32), default="local", server_default="local")
    """The KMS backend holding the issuer's key: it signs there, whatever kms.backend is now."""
    certificate_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text, default="")
    """Certificates above the issuer (further intermediates, then the root if known), PEM."""
    subject: Mapped[str] = mapped_column(Text)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class KmsKey(Base):
    """A key of the embedded (local) KMS. The private key is sealed under the master key."""

    __tablename__ = "kms_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(255), index=True)
    algorithm: Mapped[str] = mapped_column(String(16))  # "rsa" or "ec"
    key_size: Mapped[int] = mapped_column(Integer)
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_private_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    """nonce (12) || AES-256-GCM ciphertext || tag (16) of the PKCS#8 DER, AAD = the key id."""
    state: Mapped[KmsKeyState] = mapped_column(_enum(KmsKeyState), default=KmsKeyState.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(Text)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class KeyCheck(Base):
    """A key check value: proof of which key a secret was sealed under, never the key itself.

    ``name`` is the configuration key of the secret (``kms.local.master_key_file``).
    """

    __tablename__ = "key_checks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    check_value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Revocation(Base):
    """A certificate syncd revoked: listed in its issuer's CRL (``syncd crl``)."""

    __tablename__ = "revocations"
    __table_args__ = (UniqueConstraint("issuer_label", "serial_hex"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_pair_id: Mapped[int | None] = mapped_column(ForeignKey("key_pairs.id"))
    email: Mapped[str] = mapped_column(String(320))
    issuer_label: Mapped[str] = mapped_column(String(255))
    serial_hex: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    """An RFC 5280 reason name: keyCompromise, superseded, affiliationChanged, ..."""
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CrlState(Base):
    """The last CRL written for an issuer: its number (increasing) and its dates."""

    __tablename__ = "crl_state"

    issuer_label: Mapped[str] = mapped_column(String(255), primary_key=True)
    number: Mapped[int] = mapped_column(Integer)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())


INSTANCE_TOKENS_START = 1_000_000_000
"""Instance tokens start here, far above any run-lock token (one per pass), so that a task's
``claimed_by`` names one claimant whichever kind of token it holds."""


class Instance(Base):
    """A ``syncd`` process of a group sharing a PostgreSQL state store (``state.shared``).

    Its id is the token it claims tasks with; it proves it is alive with ``heartbeat_at``.
    """

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(
        Integer, Identity(start=INSTANCE_TOKENS_START), primary_key=True
    )
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    pid_namespace: Mapped[str | None] = mapped_column(String(100))
    """The kernel (boot id) and PID namespace ``pid`` belongs to: only a member sharing both
    can tell from ``pid`` that the process is gone (None: unknown, never told)."""
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())
    workers: Mapped[int] = mapped_column(Integer, default=0)
