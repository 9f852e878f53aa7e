"""Which KMS backend holds each key: ``key_pairs.kms_backend`` and ``issuers.kms_backend``.

A key stays in the backend that made it: after ``kms.backend`` changes (local to kmip), the
existing users' keys are still wrapped, and revoked, by the backend recorded here, until their
next renewal makes a key in the configured one. Every row so far was made by the embedded
backend, the only one there was: ``local``.

Revision ID: 0007_kms_backend
Revises: 0006_permanent
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_kms_backend"
down_revision: str | None = "0006_permanent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("key_pairs", "issuers")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "kms_backend", sa.String(length=32), nullable=False, server_default="local"
                )
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("kms_backend")
