"""The lifecycle of a credential after its first provisioning (issue 15).

- ``key_pairs``: when a pass last verified the key pair against Gmail and the KMS
  (``verified_at``) and what drift it found (``drift``, ``drift_detail``); what the certificate
  was issued with (``profile``, to find configuration drift); when it was superseded and
  disabled (``superseded_at``, ``disabled_at``: policy.superseded_disable_after and
  policy.obliterate_after_days count from there); whether syncd made it or adopted it
  (``origin``); the identities tried for the user's aliases (``alias_identities``).
- ``users``: the address before a rename (``previous_email``) and the aliases of the last
  directory read (``aliases``).
- ``revocations``: the certificates syncd revoked, for its CRL; ``crl_state``: the number and
  dates of the last CRL written per issuer.

Existing superseded and disabled key pairs take their last update as the time they were
superseded or disabled (the best the store knows). Existing key pairs with a certificate get
their ``profile`` read from the certificate (key size, hash, CRL and AIA URLs, the imported
issuer that signed it, its aliases; never the subject template), so that configuration drift
is found for them too.

Revision ID: 0008_lifecycle
Revises: 0007_kms_backend
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import sqlalchemy as sa
from alembic import op
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

revision: str = "0008_lifecycle"
down_revision: str | None = "0007_kms_backend"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("key_pairs") as batch:
        batch.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("drift", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("drift_detail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("profile", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("origin", sa.String(length=16), nullable=False, server_default="syncd")
        )
        batch.add_column(sa.Column("alias_identities", sa.JSON(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("previous_email", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("aliases", sa.JSON(), nullable=True))
    op.create_table(
        "revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_pair_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("issuer_label", sa.String(length=255), nullable=False),
        sa.Column("serial_hex", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_pair_id"],
            ["key_pairs.id"],
            name=op.f("fk_revocations_key_pair_id_key_pairs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocations")),
        sa.UniqueConstraint("issuer_label", "serial_hex", name=op.f("uq_revocations_issuer_label")),
    )
    op.create_table(
        "crl_state",
        sa.Column("issuer_label", sa.String(length=255), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer_label", name=op.f("pk_crl_state")),
    )
    key_pairs = sa.table(
        "key_pairs",
        sa.column("status", sa.String()),
        sa.column("updated_at", sa.DateTime()),
        sa.column("superseded_at", sa.DateTime()),
        sa.column("disabled_at", sa.DateTime()),
    )
    for status, column in (("superseded", "superseded_at"), ("disabled", "disabled_at")):
        op.execute(
            key_pairs.update()
            .where(key_pairs.c.status == status)
            .values({column: key_pairs.c.updated_at})
        )
    _backfill_profiles(op.get_bind())


# The profiles of the certificates issued before this revision, read from the certificates.

_BATCH = 500
_E = TypeVar("_E", bound=x509.ExtensionType)


def _backfill_profiles(connection: sa.Connection) -> None:
    """Fill ``key_pairs.profile`` for each key pair holding a certificate, from the certificate
    itself (its key size, signature hash, CRL and AIA URLs, the imported issuer that signed
    it, the aliases in its subjectAltName), so that configuration drift is found for the
    credentials issued before. ``subject_template`` cannot be recovered from a subject and is
    left out, as is ``issuer`` when no imported issuer matches: a key missing from a record is
    never drift. A certificate that cannot be read keeps no profile."""
    issuers = _issuers(connection)
    key_pairs = sa.table(
        "key_pairs",
        sa.column("id", sa.Integer()),
        sa.column("user_id", sa.Integer()),
        sa.column("certificate_pem", sa.Text()),
        sa.column("profile", sa.JSON()),
    )
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("email", sa.String()))
    rows = connection.execute(
        sa.select(key_pairs.c.id, key_pairs.c.certificate_pem, users.c.email)
        .join(users, users.c.id == key_pairs.c.user_id)
        .where(key_pairs.c.certificate_pem.is_not(None), key_pairs.c.profile.is_(None))
    ).all()
    update = (
        key_pairs.update()
        .where(key_pairs.c.id == sa.bindparam("key_pair"))
        .values(profile=sa.bindparam("found", type_=sa.JSON()))
    )
    found = []
    for key_pair_id, pem, email in rows:
        profile = _profile(pem, email, issuers)
        if profile is not None:
            found.append({"key_pair": key_pair_id, "found": profile})
    for start in range(0, len(found), _BATCH):
        connection.execute(update, found[start : start + _BATCH])


def _issuers(connection: sa.Connection) -> list[tuple[str, x509.Name, bytes]]:
    """(label, subject, key identifier) of each imported issuer whose certificate reads."""
    issuers = sa.table(
        "issuers", sa.column("label", sa.String()), sa.column("certificate_pem", sa.Text())
    )
    found = []
    for label, pem in connection.execute(sa.select(issuers.c.label, issuers.c.certificate_pem)):
        try:
            certificate = x509.load_pem_x509_certificate(pem.encode())
            ski = _extension(certificate, x509.SubjectKeyIdentifier)
            digest = (
                ski.digest
                if ski is not None
                else x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
            )
        except (ValueError, TypeError):
            continue
        found.append((label, certificate.subject, digest))
    return found


def _profile(
    pem: str, email: str, issuers: list[tuple[str, x509.Name, bytes]]
) -> dict[str, object] | None:
    """The profile record of one certificate (None: it cannot be read)."""
    try:
        leaf = x509.load_pem_x509_certificate(pem.encode())
        key = leaf.public_key()
        algorithm = leaf.signature_hash_algorithm
        crl = _extension(leaf, x509.CRLDistributionPoints)
        aia = _extension(leaf, x509.AuthorityInformationAccess)
        aki = _extension(leaf, x509.AuthorityKeyIdentifier)
        san = _extension(leaf, x509.SubjectAlternativeName)
    except ValueError:
        return None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) or algorithm is None:
        return None
    profile: dict[str, object] = {
        "key_bits": key.key_size,
        "hash": algorithm.name,
        "crl": [
            name.value
            for point in (crl or [])
            for name in (point.full_name or [])
            if isinstance(name, x509.UniformResourceIdentifier)
        ],
        "aia_ca_issuers": _access(aia, AuthorityInformationAccessOID.CA_ISSUERS),
        "aia_ocsp": _access(aia, AuthorityInformationAccessOID.OCSP),
    }
    key_id = aki.key_identifier if aki is not None else None
    labels = [
        label
        for label, subject, ski in issuers
        if subject == leaf.issuer and (key_id is None or key_id == ski)
    ]
    if len(labels) == 1:
        profile["issuer"] = labels[0]
    addresses = san.get_values_for_type(x509.RFC822Name) if san is not None else []
    profile["aliases"] = sorted({a.lower() for a in addresses} - {email.lower()})
    return profile


def _extension(certificate: x509.Certificate, kind: type[_E]) -> _E | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _access(
    aia: x509.AuthorityInformationAccess | None, method: x509.ObjectIdentifier
) -> list[str]:
    return [
        entry.access_location.value
        for entry in (aia or [])
        if entry.access_method == method
        and isinstance(entry.access_location, x509.UniformResourceIdentifier)
    ]


def downgrade() -> None:
    op.drop_table("crl_state")
    op.drop_table("revocations")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("aliases")
        batch.drop_column("previous_email")
    with op.batch_alter_table("key_pairs") as batch:
        for column in (
            "alias_identities",
            "origin",
            "disabled_at",
            "superseded_at",
            "profile",
            "drift_detail",
            "drift",
            "verified_at",
        ):
            batch.drop_column(column)
