"""The CRLs syncd publishes for its issuing CAs, and ``syncd revoke``.

syncd operates the issuing CA, so it publishes that CA's revocation list: every serial in the
``revocations`` table (recorded by deprovisioning, by a replacement and by ``syncd revoke``),
signed by the issuer's key in the KMS (``syncd.pki.crl``). ``write_crl`` writes one now
(``syncd crl``); ``refresh_if_due`` is what each pass calls, under the run lock, to keep
``crl.output`` fresh: written again when it is missing or unreadable, when its nextUpdate is
less than half of ``crl.validity`` away, or when the revocations differ from those it lists.
``crl.output`` may hold ``{issuer}``: then every imported issuer still valid gets its own file
(a CA rollover leaves the old CA's leaves with a CRL of their own).

``revoke_user`` records the revocation of a user's active and superseded certificates and,
where the user keeps a credential, queues a replacement that the next pass carries out.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from syncd.app.context import App
from syncd.credentials.issuers import IssuingCA, list_issuers, load_issuer
from syncd.domain import ActionKind, KeyPairStatus, ReasonCode, TaskKind
from syncd.errors import CertificateError, ConfigError, LockLostError, SyncdError
from syncd.pipeline.enqueue import enqueue
from syncd.pipeline.steps.base import RevokedCertificate
from syncd.pipeline.steps.revocation import insert_new, issuer_label_of
from syncd.pki.crl import (
    USER_REASONS,
    RevokedSerial,
    build_crl,
    encode_crl,
    load_crl,
    serial_from_hex,
    signed_by,
)
from syncd.plan import Action
from syncd.state import audit, fencing
from syncd.state.fencing import Fence
from syncd.state.models import CrlState, KeyPair, Revocation, User

log = logging.getLogger("syncd.crl")

ISSUER_FIELD = "{issuer}"


@dataclass(frozen=True)
class WrittenCRL:
    """One CRL syncd made: where it went (None: handed back only), what it holds."""

    issuer_label: str
    path: Path | None
    number: int
    entries: int
    this_update: datetime
    next_update: datetime
    data: bytes


def output_path(template: Path, label: str) -> Path:
    """``crl.output`` (or ``--output``) for the issuer ``label``: ``{issuer}`` filled in."""
    return Path(str(template).replace(ISSUER_FIELD, label))


def _revoked(
    session: Session, label: str, now: datetime, validity: timedelta
) -> list[RevokedSerial]:
    """The issuer's revocations a CRL made at ``now`` lists: a certificate that expired is
    left out once a CRL made after its expiry (one ``validity`` ago) has listed it (RFC 5280
    3.3); one whose expiry syncd does not know stays."""
    rows = session.execute(
        select(Revocation.serial_hex, Revocation.revoked_at, Revocation.reason)
        .outerjoin(KeyPair, KeyPair.id == Revocation.key_pair_id)
        .where(
            Revocation.issuer_label == label,
            or_(KeyPair.not_after.is_(None), KeyPair.not_after > now - validity),
        )
    )
    return [RevokedSerial(serial_from_hex(s), at, reason) for s, at, reason in rows]


def _next_number(session: Session, label: str, now: datetime) -> int:
    """Allocate the issuer's next CRL number (a CRL number never goes back, RFC 5280 5.2.3)."""
    state = session.get(CrlState, label, with_for_update=True)
    if state is None:
        state = CrlState(issuer_label=label, number=0, this_update=now, next_update=now)
        session.add(state)
    number = int(state.number) + 1
    state.number = number
    session.flush()
    return number


def _write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically: a web server serving it never sees half a CRL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_crl(
    app: App,
    issuer_label: str | None = None,
    output: Path | None = None,
    fmt: str | None = None,
    *,
    fence: Fence | None = None,
    now: datetime | None = None,
) -> WrittenCRL:
    """Make the CRL of ``issuer_label`` (default ``ca.label``) now and write it to ``output``
    (default ``crl.output``; neither: only returned), ``{issuer}`` filled in. ``fence``, when
    the caller holds the run lock, is proved where the CRL number is taken and where the result
    is recorded."""
    label = issuer_label or app.config.ca.label
    template = output or app.config.crl.output
    path = output_path(template, label) if template is not None else None
    return make_crl(app, label, fmt, path, fence=fence, now=now)


def make_crl(
    app: App,
    issuer_label: str | None = None,
    fmt: str | None = None,
    output: Path | None = None,
    *,
    fence: Fence | None = None,
    now: datetime | None = None,
) -> WrittenCRL:
    """Make the CRL of ``issuer_label`` (default ``ca.label``) now, written to ``output`` when
    given (atomically) and returned; see ``write_crl``."""
    config = app.config
    label = issuer_label or config.ca.label
    fmt = fmt or config.crl.format
    now = now or datetime.now(UTC)
    issuer = load_issuer(app.database.sessions, label)
    with app.database.transaction() as session:
        if fence is not None:
            fencing.prove(session.connection(), fence.token)
        number = _next_number(session, label, now)
        revoked = _revoked(session, label, now, timedelta(seconds=config.crl.validity))
    keys = app.keyring()
    try:
        sign = issuer.signer(keys.holding(issuer.kms_backend), config.certificate.hash)
        crl = build_crl(
            issuer.certificate,
            sign,
            revoked,
            number=number,
            now=now,
            validity=timedelta(seconds=config.crl.validity),
            hash_name=config.certificate.hash,
        )
    finally:
        keys.close()
    data = encode_crl(crl, fmt)
    if output is not None:
        try:
            _write_file(output, data)
        except OSError as error:
            raise SyncdError(f"cannot write the CRL of {label!r} to {output}: {error}") from None
    assert crl.last_update_utc is not None and crl.next_update_utc is not None
    written = WrittenCRL(
        label, output, number, len(revoked), crl.last_update_utc, crl.next_update_utc, data
    )
    _record(app, written, fence)
    return written


def _record(app: App, written: WrittenCRL, fence: Fence | None) -> None:
    with app.database.transaction() as session:
        if fence is not None:
            fencing.prove(session.connection(), fence.token)
        state = session.get(CrlState, written.issuer_label)
        if state is not None:
            state.this_update = written.this_update
            state.next_update = written.next_update
        audit.record(
            session,
            "crl.written",
            issuer=written.issuer_label,
            number=written.number,
            entries=written.entries,
            path=str(written.path) if written.path else None,
            next_update=written.next_update.isoformat(),
        )


# --- the pass's refresh -----------------------------------------------------------------


def why_due(
    path: Path,
    issuer: IssuingCA,
    listed: set[int],
    validity: timedelta,
    now: datetime,
    fmt: str = "der",
) -> str | None:
    """Why the CRL at ``path`` must be written again now (None: it is fresh)."""
    try:
        data = path.read_bytes()
        crl = load_crl(data)
    except FileNotFoundError:
        return "missing"
    except (OSError, CertificateError) as error:
        return f"unreadable ({error})"
    if data.lstrip().startswith(b"-----BEGIN") != (fmt == "pem"):
        return f"not in crl.format ({fmt})"
    if not signed_by(crl, issuer.certificate):
        return "not signed by the issuer"
    next_update = crl.next_update_utc
    if next_update is None or next_update - now < validity / 2:
        return "nextUpdate is less than half of crl.validity away"
    if {entry.serial_number for entry in crl} != listed:
        return "revocations changed"
    return None


def _issuers_to_publish(app: App, now: datetime) -> list[IssuingCA]:
    output = app.config.crl.output
    assert output is not None
    if ISSUER_FIELD not in str(output):
        return [load_issuer(app.database.sessions, app.config.ca.label)]
    return [
        issuer
        for issuer in list_issuers(app.database.sessions)
        if issuer.certificate.not_valid_after_utc > now
    ]


def refresh_if_due(app: App, fence: Fence, now: datetime | None = None) -> list[WrittenCRL]:
    """Write again each CRL of ``crl.output`` that is due (see ``why_due``); the pass calls it
    under the run lock. A CRL that cannot be made is logged and audited and tried again at the
    next pass: it does not fail the pass, whose credentials are done. Returns those written."""
    config = app.config
    if config.crl.output is None:
        return []
    now = now or datetime.now(UTC)
    validity = timedelta(seconds=config.crl.validity)
    written = []
    try:
        issuers = _issuers_to_publish(app, now)
    except SyncdError as error:
        log.error("CRL not refreshed: %s", error)
        return []
    for issuer in issuers:
        path = output_path(config.crl.output, issuer.label)
        with app.database.sessions() as session:
            listed = {r.serial for r in _revoked(session, issuer.label, now, validity)}
        reason = why_due(path, issuer, listed, validity, now, config.crl.format)
        if reason is None:
            continue
        try:
            done = write_crl(app, issuer.label, path, fence=fence, now=now)
        except LockLostError:
            raise
        except SyncdError as error:
            log.error(
                "the CRL of %r at %s (%s) was not written: %s", issuer.label, path, reason, error
            )
            app.audit("crl.failed", issuer=issuer.label, path=str(path), error=str(error))
            continue
        log.info(
            "wrote CRL %d of %r to %s (%s): %d revoked",
            done.number,
            issuer.label,
            path,
            reason,
            done.entries,
        )
        written.append(done)
    return written


# --- syncd revoke ---------------------------------------------------------------------


def check_reason(reason: str) -> str:
    """``reason`` if ``syncd revoke`` takes it; ConfigError naming the choices otherwise."""
    if reason not in USER_REASONS:
        raise ConfigError("--reason", f"{reason!r} is not one of {', '.join(USER_REASONS)}")
    return reason


REPLACED_AFTER = ("keyCompromise", "superseded", "affiliationChanged", "unspecified")
"""Reasons after which the user keeps a credential: a fresh one is queued for the next pass.
After cessationOfOperation and privilegeWithdrawn the user is meant to have none: syncd
deprovisions them when the directory says so, and ``syncd resync --force`` issues anew."""


@dataclass(frozen=True)
class UserRevocation:
    """What ``syncd revoke`` recorded for one user."""

    email: str
    reason: str
    revoked: tuple[RevokedCertificate, ...]
    """Certificates newly listed (or raised to keyCompromise)."""
    already: tuple[str, ...]
    """Serials listed before with this reason."""
    unlisted: tuple[str, ...]
    """Serials of certificates no imported issuing CA signed: no CRL of syncd's can list them."""
    replacement: bool
    """A replacement task was queued: the next pass gives the user a fresh credential."""

    def describe(self) -> dict[str, object]:
        return {
            "email": self.email,
            "reason": self.reason,
            "revoked": [{"serial": r.serial_hex, "issuer": r.issuer_label} for r in self.revoked],
            "already_revoked": list(self.already),
            "not_listed": list(self.unlisted),
            "replacement_queued": self.replacement,
        }

    def lines(self) -> list[str]:
        found = [
            f"revoked {r.serial_hex} (issuing CA {r.issuer_label!r}) for {self.email}: "
            f"{self.reason}"
            for r in self.revoked
        ]
        found += [f"{serial} was already revoked" for serial in self.already]
        found += [
            f"{serial}: issued by no imported issuing CA; no CRL of syncd's lists it"
            for serial in self.unlisted
        ]
        if not found:
            found.append(f"{self.email} has no active or superseded certificate to revoke")
        if self.revoked:
            found.append(
                "the CRL lists them from its next writing (`syncd crl`, or the next "
                "pass when crl.output is set)"
            )
        if self.replacement:
            found.append(f"the next pass replaces the credential of {self.email}")
        return found


def _user(session: Session, email: str) -> User:
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        raise ConfigError("--user", f"syncd manages no user {email} (see `syncd status`)")
    return user


def revoke_user(
    app: App, email: str, reason: str, *, fence: Fence, now: datetime | None = None
) -> UserRevocation:
    """Record the revocation of ``email``'s active and superseded certificates for ``reason``
    (audited), under the run lock; when the user keeps a credential (``REPLACED_AFTER``) and
    has an active one, queue its replacement, which the next pass carries out. The KMS keys and
    the Gmail key pairs stay as they are: mail already encrypted to them stays readable."""
    email = email.strip().lower()
    reason = check_reason(reason)
    now = now or datetime.now(UTC)
    issuers = list_issuers(app.database.sessions)
    with app.database.transaction() as session:
        fencing.prove(session.connection(), fence.token)
        user = _user(session, email)
        held = [
            kp
            for kp in user.key_pairs
            if kp.certificate_pem and kp.status in (KeyPairStatus.ACTIVE, KeyPairStatus.SUPERSEDED)
        ]
        wanted, unlisted = [], []
        for kp in held:
            certificate = x509.load_pem_x509_certificate((kp.certificate_pem or "").encode())
            serial = format(certificate.serial_number, "x")
            label = issuer_label_of(certificate, issuers)
            if label is None:
                unlisted.append(serial)
            else:
                wanted.append(RevokedCertificate(kp.id, label, serial, reason))
        changed = insert_new(session.connection(), email, wanted, now)
        already = tuple(r.serial_hex for r in wanted if r not in changed)
        replace = (
            reason in REPLACED_AFTER
            and user.deprovisioned_at is None
            and any(kp.status is KeyPairStatus.ACTIVE for kp in held)
        )
        if replace:
            prose = f"syncd revoke --reason {reason}: fresh key pair"
            action = Action(
                email,
                ActionKind.REPLACE,
                prose,
                TaskKind.REPLACE,
                user.directory_id,
                ReasonCode.RESYNC_REPLACE,
            )
            enqueue(session, [action], None, now)
        audit.record(
            session,
            "credential.revoked",
            user=user,
            reason=reason,
            serials=[r.serial_hex for r in changed],
            already_revoked=list(already),
            not_listed=unlisted,
            replacement_queued=replace,
        )
    return UserRevocation(email, reason, tuple(changed), already, tuple(unlisted), replace)
