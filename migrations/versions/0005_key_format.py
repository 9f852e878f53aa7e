"""key_pairs.private_key_format: how the uploaded kaclsData holds the private key.

syncd wrote PKCS#8 until issue 12; it now writes PKCS#1 by default (``kacls.private_key_format``).
Every existing row is marked pkcs8: those already in Gmail were uploaded that way, and a row not
yet uploaded is given the format actually written when its upload step runs.

Revision ID: 0005_key_format
Revises: 0004_key_check
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_key_format"
down_revision: str | None = "0004_key_check"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("key_pairs") as batch:
        batch.add_column(sa.Column("private_key_format", sa.String(length=16), nullable=True))
    op.execute("UPDATE key_pairs SET private_key_format = 'pkcs8'")


def downgrade() -> None:
    with op.batch_alter_table("key_pairs") as batch:
        batch.drop_column("private_key_format")
