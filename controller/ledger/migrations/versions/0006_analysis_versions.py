"""analysis versions: re-analysis of stored images with provenance

A table of analysis versions (analyzer, settings, code version, per-round results); the
analysis version each round's outcomes and each measurement come from, and the version a
campaign plans from. Existing rows are version 1 (the original analysis); a campaign's
version-1 row is written when it is first re-analysed (see controller.loop.reanalysis).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analysisversion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("analyzer", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("code_version", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("created_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "number"),
    )
    with op.batch_alter_table("analysisversion", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysisversion_campaign_id"), ["campaign_id"], unique=False
        )
    # server defaults backfill every existing row as version 1, the original analysis
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("analysis_version", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("analysis_version", sa.Integer(), nullable=False, server_default="1")
        )
    with op.batch_alter_table("measurement", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("analysis_version", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.create_index(
            batch_op.f("ix_measurement_analysis_version"), ["analysis_version"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("measurement", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_measurement_analysis_version"))
        batch_op.drop_column("analysis_version")
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("analysis_version")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("analysis_version")
    with op.batch_alter_table("analysisversion", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysisversion_campaign_id"))
    op.drop_table("analysisversion")
