"""Which node's media worker runs each live space's room.

Revision 0003. With several nodes on one database, a node resumes after a restart only
the rooms it ran, and ends a room whose space was ended through another node. Spaces
from before this revision have none (NULL): a node on its own runs them all.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spaces") as spaces:
        spaces.add_column(sa.Column("media_node", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spaces") as spaces:
        spaces.drop_column("media_node")
