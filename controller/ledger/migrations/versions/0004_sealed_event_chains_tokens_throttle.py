"""sealed event chains, command-line tokens, login throttling

Events get their position in their chain (``seq``, unique per chain: a fork cannot be
committed) and a MAC under the ledger key (``mac``, ``key_id``); approvals record a name the
actor claimed (``claimed_as``); tables for command-line tokens and login throttling.

Data: existing events are numbered, credentials in their payloads are masked (re-chaining what
follows), and each chain gets one sealed ``ledger_sealed`` event that covers the older events
and binds the campaign's rows as they are (see controller.ledger.maintenance.seal_ledger).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 21:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _number_events() -> None:
    conn = op.get_bind()
    event = sa.table(
        "event",
        sa.column("id", sa.Integer),
        sa.column("campaign_id", sa.Integer),
        sa.column("seq", sa.Integer),
    )
    seqs: dict[int, int] = {}
    updates = []
    for row in conn.execute(sa.select(event.c.id, event.c.campaign_id).order_by(event.c.id)):
        k = row.campaign_id or 0
        seqs[k] = seqs.get(k, 0) + 1
        updates.append({"eid": row.id, "s": seqs[k]})
    if updates:
        conn.execute(
            event.update().where(event.c.id == sa.bindparam("eid")).values(seq=sa.bindparam("s")),
            updates,
        )


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("mac", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))

    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("claimed_as", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )

    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_used_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_token_digest"), ["digest"], unique=True)
        batch_op.create_index(batch_op.f("ix_api_token_user_id"), ["user_id"], unique=False)

    op.create_table(
        "login_throttle",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("locked_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key"),
    )

    _number_events()
    op.create_index(
        "uq_event_chain_seq", "event", [sa.text("coalesce(campaign_id, 0)"), "seq"], unique=True
    )

    from controller.ledger.maintenance import seal_ledger
    from controller.ledger.sealing import ledger_key

    seal_ledger(op.get_bind(), ledger_key())


def downgrade() -> None:
    """Downgrade schema (the events keep their masked payloads; the seals are dropped)."""
    op.drop_index("uq_event_chain_seq", table_name="event")
    op.drop_table("login_throttle")
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_token_user_id"))
        batch_op.drop_index(batch_op.f("ix_api_token_digest"))
    op.drop_table("api_token")
    with op.batch_alter_table("approval", schema=None) as batch_op:
        batch_op.drop_column("claimed_as")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("key_id")
        batch_op.drop_column("mac")
        batch_op.drop_column("seq")
