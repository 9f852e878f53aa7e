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
superseded or disabled (the best the store knows).

Revision ID: 0008_lifecycle
Revises: 0007_kms_backend
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

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
        sa.UniqueConstraint(
            "issuer_label", "serial_hex", name=op.f("uq_revocations_issuer_label")
        ),
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
