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
from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.app.context import App
from syncd.credentials.issuers import IssuingCA, list_issuers, load_issuer
from syncd.errors import CertificateError, ConfigError, LockLostError, SyncdError
from syncd.pki.crl import (
    USER_REASONS,
    RevokedSerial,
    build_crl,
    encode_crl,
    load_crl,
    serial_from_hex,
    signed_by,
)
from syncd.state import audit, fencing
from syncd.state.fencing import Fence
from syncd.state.models import CRLState, Revocation

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


def _revoked(session: Session, label: str) -> list[RevokedSerial]:
    rows = session.execute(
        select(Revocation.serial_hex, Revocation.revoked_at, Revocation.reason).where(
            Revocation.issuer_label == label
        )
    )
    return [RevokedSerial(serial_from_hex(s), at, reason) for s, at, reason in rows]


def _next_number(session: Session, label: str) -> int:
    """Allocate the issuer's next CRL number (a CRL number never goes back, RFC 5280 5.2.3)."""
    state = session.get(CRLState, label, with_for_update=True)
    if state is None:
        state = CRLState(issuer_label=label, number=0)
        session.add(state)
    state.number += 1
    session.flush()
    return state.number


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
    (default ``crl.output``; neither: only returned). ``fence``, when the caller holds the run
    lock, is proved where the CRL number is taken and where the result is recorded."""
    config = app.config
    label = issuer_label or config.ca.label
    fmt = fmt or config.crl.format
    now = now or datetime.now(UTC)
    template = output or config.crl.output
    output = output_path(template, label) if template is not None else None
    issuer = load_issuer(app.database.sessions, label)
    with app.database.transaction() as session:
        if fence is not None:
            fencing.prove(session.connection(), fence.token)
        number = _next_number(session, label)
        revoked = _revoked(session, label)
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
        state = session.get(CRLState, written.issuer_label)
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


def _listed(session: Session, label: str) -> set[int]:
    rows = session.scalars(select(Revocation.serial_hex).where(Revocation.issuer_label == label))
    return {serial_from_hex(serial) for serial in rows}


def why_due(
    path: Path, issuer: IssuingCA, listed: set[int], validity: timedelta, now: datetime
) -> str | None:
    """Why the CRL at ``path`` must be written again now (None: it is fresh)."""
    try:
        crl = load_crl(path.read_bytes())
    except FileNotFoundError:
        return "missing"
    except (OSError, CertificateError) as error:
        return f"unreadable ({error})"
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
            listed = _listed(session, issuer.label)
        reason = why_due(path, issuer, listed, validity, now)
        if reason is None:
            continue
        try:
            done = write_crl(app, issuer.label, path, fence=fence, now=now)
        except LockLostError:
            raise
        except SyncdError as error:
            log.error("the CRL of %r at %s (%s) was not written: %s", issuer.label, path,
                      reason, error)
            app.audit("crl.failed", issuer=issuer.label, path=str(path), error=str(error))
            continue
        log.info("wrote CRL %d of %r to %s (%s): %d revoked", done.number, issuer.label, path,
                 reason, done.entries)
        written.append(done)
    return written


# --- syncd revoke ---------------------------------------------------------------------


def check_reason(reason: str) -> str:
    """``reason`` if ``syncd revoke`` takes it; ConfigError naming the choices otherwise."""
    if reason not in USER_REASONS:
        raise ConfigError("--reason", f"{reason!r} is not one of {', '.join(USER_REASONS)}")
    return reason


def certificate_issuer_label(certificate_pem: str, issuers: list[IssuingCA]) -> str | None:
    """The label of the imported issuer that signed the certificate, None if none did."""
    from syncd.pki.chain import issued_by

    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    for issuer in issuers:
        if issued_by(certificate, issuer.certificate):
            return issuer.label
    return None
