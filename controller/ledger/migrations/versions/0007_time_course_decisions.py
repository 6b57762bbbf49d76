"""time-course plates: decision points, decision proposals, time points of steps, images, measurements

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 10:00:00

Every new column is nullable and every new table starts empty, so ledgers written before it read
as they did (their rows are end-point plates: no time point, no decision point).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decisionpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("time_h", sa.Float(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("policy_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("observations", sa.JSON(), nullable=False),
        sa.Column("forecasts", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=True),
        sa.Column("state_after", sa.JSON(), nullable=True),
        sa.Column("first_seq", sa.Integer(), nullable=True),
        sa.Column("clock_s", sa.Float(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("round_id", "index"),
    )
    with op.batch_alter_table("decisionpoint", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decisionpoint_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_decisionpoint_round_id"), ["round_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisionpoint_policy_id"), ["policy_id"], unique=False)
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision_point_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_proposal_decision_point_id"), ["decision_point_id"], unique=False
        )
        # SQLite cannot add a foreign key without re-creating the table, and dropping the old
        # proposal table fails while approvals and experiments reference it (foreign_keys=ON):
        # an old ledger would not open. The key is added where ALTER TABLE can.
        if op.get_bind().dialect.name != "sqlite":
            batch_op.create_foreign_key(
                "fk_proposal_decision_point_id_decisionpoint",
                "decisionpoint",
                ["decision_point_id"],
                ["id"],
            )
    for table in ("step", "rawdata", "measurement"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("time_point", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ("measurement", "rawdata", "step"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("time_point")
    with op.batch_alter_table("proposal", schema=None) as batch_op:
        if op.get_bind().dialect.name != "sqlite":
            batch_op.drop_constraint(
                "fk_proposal_decision_point_id_decisionpoint", type_="foreignkey"
            )
        batch_op.drop_index(batch_op.f("ix_proposal_decision_point_id"))
        batch_op.drop_column("unit")
        batch_op.drop_column("decision_point_id")
    with op.batch_alter_table("decisionpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisionpoint_policy_id"))
        batch_op.drop_index(batch_op.f("ix_decisionpoint_round_id"))
        batch_op.drop_index(batch_op.f("ix_decisionpoint_campaign_id"))
    op.drop_table("decisionpoint")
