"""Spaces, stored: creating, reading, listing and moving them through their lifecycle."""

from __future__ import annotations

import sqlite3

from podium.control.credentials import new_id
from podium.control.db import Database
from podium.control.lifecycle import Action, Space, SpaceStatus, apply
from podium.errors import InvalidInput, NotFound

TITLE_MAX = 120
DESCRIPTION_MAX = 2000
LIST_LIMIT_MAX = 200


def _space(row: sqlite3.Row) -> Space:
    return Space(
        id=row["id"],
        host_id=row["host_id"],
        title=row["title"],
        description=row["description"],
        status=SpaceStatus(row["status"]),
        scheduled_start=row["scheduled_start"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


class Spaces:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        host_id: str,
        title: str,
        description: str,
        scheduled_start: float | None,
        now: float,
    ) -> Space:
        title = title.strip()
        if not 1 <= len(title) <= TITLE_MAX:
            raise InvalidInput(f"a title is 1 to {TITLE_MAX} characters")
        if len(description) > DESCRIPTION_MAX:
            raise InvalidInput(f"a description is at most {DESCRIPTION_MAX} characters")
        if scheduled_start is not None and scheduled_start < now - 60:
            raise InvalidInput("scheduled_start is in the past")
        space = Space(
            id=new_id(10),
            host_id=host_id,
            title=title,
            description=description,
            status=SpaceStatus.SCHEDULED,
            scheduled_start=scheduled_start,
            created_at=now,
        )
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO spaces (id, host_id, title, description, status,"
                " scheduled_start, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    space.id,
                    host_id,
                    title,
                    description,
                    space.status.value,
                    scheduled_start,
                    now,
                ),
            )
        return space

    def get(self, space_id: str) -> Space:
        rows = self._db.query("SELECT * FROM spaces WHERE id = ?", (space_id,))
        if not rows:
            raise NotFound(f"no space with id {space_id!r}")
        return _space(rows[0])

    def recent(self, status: SpaceStatus | None = None, limit: int = 50) -> list[Space]:
        """Spaces, newest first; live ones by start, scheduled ones by start time."""
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        if status is None:
            rows = self._db.query("SELECT * FROM spaces ORDER BY created_at DESC LIMIT ?", (limit,))
        elif status is SpaceStatus.SCHEDULED:
            rows = self._db.query(
                "SELECT * FROM spaces WHERE status = ?"
                " ORDER BY coalesce(scheduled_start, created_at) LIMIT ?",
                (status.value, limit),
            )
        else:
            rows = self._db.query(
                "SELECT * FROM spaces WHERE status = ?"
                " ORDER BY coalesce(ended_at, started_at, created_at) DESC LIMIT ?",
                (status.value, limit),
            )
        return [_space(r) for r in rows]

    def live_ids(self) -> list[str]:
        """Every live space's id (the media worker resumes their rooms after a restart)."""
        rows = self._db.query("SELECT id FROM spaces WHERE status = ?", (SpaceStatus.LIVE.value,))
        return [row[0] for row in rows]

    def count_by_status(self) -> dict[SpaceStatus, int]:
        counts = dict.fromkeys(SpaceStatus, 0)
        for status, count in self._db.query("SELECT status, count(*) FROM spaces GROUP BY status"):
            counts[SpaceStatus(status)] = count
        return counts

    def transition(self, space_id: str, action: Action, actor_id: str, now: float) -> Space:
        """Apply a lifecycle action atomically (two concurrent ends cannot both win)."""
        with self._db.transaction() as conn:
            rows = conn.execute("SELECT * FROM spaces WHERE id = ?", (space_id,)).fetchall()
            if not rows:
                raise NotFound(f"no space with id {space_id!r}")
            after = apply(_space(rows[0]), action, actor_id, now)
            conn.execute(
                "UPDATE spaces SET status = ?, started_at = ?, ended_at = ? WHERE id = ?",
                (after.status.value, after.started_at, after.ended_at, space_id),
            )
        return after
