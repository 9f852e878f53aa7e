"""Recording revoked certificates: the rows of ``revocations`` that the issuer's CRL lists.

A step names what it revokes in ``Outcome.revocations`` (deprovisioning: cessationOfOperation;
a replacement: the previous certificate, superseded), and ``tasks.record_step`` inserts them
with the checkpoint; ``syncd revoke`` records through the same ``insert_new``. A certificate is
listed once per issuer and serial; a later keyCompromise replaces an earlier, milder reason
(relying parties then distrust signatures made before the revocation date as well).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from sqlalchemy import Connection, insert, select, tuple_, update

from syncd.credentials.issuers import IssuingCA
from syncd.pipeline.steps.base import KeyPairView, RevokedCertificate, Services
from syncd.pki.chain import issued_by
from syncd.state.models import Revocation

log = logging.getLogger("syncd.revocations")

KEY_COMPROMISE = "keyCompromise"


def issuer_label_of(certificate: x509.Certificate, issuers: Iterable[IssuingCA]) -> str | None:
    """The label of the imported issuer whose key signed ``certificate``; None if none did."""
    for issuer in issuers:
        if issued_by(certificate, issuer.certificate):
            return issuer.label
    return None


def revocation_of(
    view: KeyPairView, email: str, reason: str, services: Services
) -> RevokedCertificate | None:
    """The revocation of ``view``'s certificate (None when it has none, or when no imported
    issuer signed it: no CRL of syncd's can list it, and the log says so)."""
    if not view.certificate_pem:
        return None
    certificate = x509.load_pem_x509_certificate(view.certificate_pem.encode())
    label = issuer_label_of(certificate, (services.issuer, *services.issuers))
    serial_hex = format(certificate.serial_number, "x")
    if label is None:
        log.warning("%s: certificate %s (generation %d) was issued by %s, no imported issuing "
                    "CA: no CRL of syncd lists its revocation", email, serial_hex,
                    view.generation, certificate.issuer.rfc4514_string())
        return None
    return RevokedCertificate(view.id, label, serial_hex, reason)


def insert_new(
    connection: Connection,
    email: str,
    revoked: Sequence[RevokedCertificate],
    now: datetime,
) -> list[RevokedCertificate]:
    """Insert the revocations not recorded yet (and raise an earlier reason to keyCompromise);
    returns those that changed the CRL. Runs in the caller's transaction."""
    if not revoked:
        return []
    keys = [(item.issuer_label, item.serial_hex) for item in revoked]
    known = {
        (row.issuer_label, row.serial_hex): row.reason
        for row in connection.execute(
            select(Revocation.issuer_label, Revocation.serial_hex, Revocation.reason).where(
                tuple_(Revocation.issuer_label, Revocation.serial_hex).in_(keys)
            )
        )
    }
    changed = []
    for item in revoked:
        key = (item.issuer_label, item.serial_hex)
        if key not in known:
            connection.execute(
                insert(Revocation).values(
                    key_pair_id=item.key_pair_id,
                    email=email,
                    issuer_label=item.issuer_label,
                    serial_hex=item.serial_hex,
                    reason=item.reason,
                    revoked_at=now,
                )
            )
        elif item.reason == KEY_COMPROMISE and known[key] != KEY_COMPROMISE:
            connection.execute(
                update(Revocation)
                .where(
                    Revocation.issuer_label == item.issuer_label,
                    Revocation.serial_hex == item.serial_hex,
                )
                .values(reason=KEY_COMPROMISE)
            )
        else:
            continue
        known[key] = item.reason
        changed.append(item)
    return changed
