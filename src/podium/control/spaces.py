"""Spaces, stored: creating, reading, listing and moving them through their lifecycle."""

from __future__ import annotations

from collections import OrderedDict

from sqlalchemy import func, insert, select, update

from podium.control.credentials import new_id
from podium.control.db import Database, DatabaseUnavailable, Record
from podium.control.lifecycle import Action, Space, SpaceStatus, apply
from podium.control.schema import spaces
from podium.errors import InvalidInput, NotFound

TITLE_MAX = 120
DESCRIPTION_MAX = 2000
LIST_LIMIT_MAX = 200
# The items of a podcast feed: the latest spaces, as podcast feeds usually carry.
FEED_LIMIT = 100
# How old a space read for a listener's join may be (a status changed on another node is
# seen this much later here), and how many such reads a node keeps.
CACHE_S = 1.0
CACHE_SPACES = 10_000


def _space(row: Record) -> Space:
    fields = row._mapping
    return Space(
        id=fields["id"],
        host_id=fields["host_id"],
        title=fields["title"],
        description=fields["description"],
        status=SpaceStatus(fields["status"]),
        scheduled_start=fields["scheduled_start"],
        created_at=fields["created_at"],
        started_at=fields["started_at"],
        ended_at=fields["ended_at"],
        in_feed=bool(fields["in_feed"]),
        replay_bytes=fields["replay_bytes"],
        replay_seconds=fields["replay_seconds"],
    )


class Spaces:
    def __init__(self, db: Database) -> None:
        self._db = db
        # space id -> (when read, the space): for the reads every listener's join makes.
        self._cache: OrderedDict[str, tuple[float, Space]] = OrderedDict()

    def _remember(self, space: Space, now: float) -> Space:
        self._cache[space.id] = (now, space)
        self._cache.move_to_end(space.id)
        while len(self._cache) > CACHE_SPACES:
            self._cache.popitem(last=False)
        return space

    def get_cached(self, space_id: str, now: float) -> Space:
        """The space as read at most :data:`CACHE_S` ago: what a join, the room state and
        the space page need, without a database read per listener.

        When the database cannot be reached, the space as last read, however long ago: its
        status is what listening and joining need, and the one it last had beats refusing
        the crowd. Raises :class:`NotFound` as :meth:`get` does, and
        :class:`DatabaseUnavailable` for a space not read before the outage.
        """
        cached = self._cache.get(space_id)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        try:
            return self._remember(self.get(space_id), now)
        except DatabaseUnavailable:
            if cached is None:
                raise
            return cached[1]

    def forget(self, space_id: str) -> None:
        """Drop the cached read of a space (another node changed it)."""
        self._cache.pop(space_id, None)

    def create(
        self,
        host_id: str,
        title: str,
        description: str,
        scheduled_start: float | None,
        now: float,
        *,
        in_feed: bool = True,
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
            in_feed=in_feed,
        )
        with self._db.transaction() as conn:
            conn.execute(
                insert(spaces).values(
                    id=space.id,
                    host_id=host_id,
                    title=title,
                    description=description,
                    status=space.status.value,
                    scheduled_start=scheduled_start,
                    created_at=now,
                    in_feed=in_feed,
                )
            )
        return space

    def get(self, space_id: str) -> Space:
        rows = self._db.query(select(spaces).where(spaces.c.id == space_id))
        if not rows:
            raise NotFound(f"no space with id {space_id!r}")
        return _space(rows[0])

    def recent(self, status: SpaceStatus | None = None, limit: int = 50) -> list[Space]:
        """Spaces, newest first; live ones by start, scheduled ones by start time."""
        limit = max(1, min(limit, LIST_LIMIT_MAX))
        c = spaces.c
        if status is None:
            statement = select(spaces).order_by(c.created_at.desc())
        elif status is SpaceStatus.SCHEDULED:
            statement = (
                select(spaces)
                .where(c.status == status.value)
                .order_by(func.coalesce(c.scheduled_start, c.created_at))
            )
        else:
            statement = (
                select(spaces)
                .where(c.status == status.value)
                .order_by(func.coalesce(c.ended_at, c.started_at, c.created_at).desc())
            )
        rows = self._db.query(statement.limit(limit))
        return [_space(r) for r in rows]

    def live_ids(self, media_node: str | None = None) -> list[str]:
        """The live spaces whose rooms a media worker runs (and resumes after a restart):
        every one for a node on its own (``None``), else those of ``media_node`` and those
        nobody has claimed."""
        c = spaces.c
        statement = select(c.id).where(c.status == SpaceStatus.LIVE.value)
        if media_node is not None:
            statement = statement.where((c.media_node == media_node) | c.media_node.is_(None))
        return [row[0] for row in self._db.query(statement)]

    def live_placements(self) -> list[tuple[str, str | None]]:
        """Every live space with the node recorded as running its room (None: unclaimed)."""
        c = spaces.c
        statement = select(c.id, c.media_node).where(c.status == SpaceStatus.LIVE.value)
        return [(row[0], row[1]) for row in self._db.query(statement)]

    def claim_media(self, space_id: str, media_node: str | None) -> None:
        """Record that ``media_node`` runs the space's room (nothing for a lone node)."""
        if media_node is None:
            return
        with self._db.transaction() as conn:
            conn.execute(
                update(spaces).where(spaces.c.id == space_id).values(media_node=media_node)
            )

    def media_node_of(self, space_id: str) -> str | None:
        """The node recorded as running (or having run) the space's room, if any."""
        rows = self._db.query(select(spaces.c.media_node).where(spaces.c.id == space_id))
        return rows[0][0] if rows else None

    def not_live(self, space_ids: list[str]) -> list[str]:
        """Those of ``space_ids`` that are no longer live (ended through another node)."""
        if not space_ids:
            return []
        c = spaces.c
        rows = self._db.query(
            select(c.id).where(c.id.in_(space_ids), c.status != SpaceStatus.LIVE.value)
        )
        return [row[0] for row in rows]

    def feed(self, host_id: str | None, limit: int = FEED_LIMIT) -> list[Space]:
        """The spaces of a podcast feed (one host's, or everyone's for ``None``): those let
        into the feeds that have not been cancelled, the latest first (by when they
        ended, went live, or are to start)."""
        c = spaces.c
        latest = func.coalesce(c.ended_at, c.started_at, c.scheduled_start, c.created_at)
        statement = select(spaces).where(
            c.in_feed.is_(True), c.status != SpaceStatus.CANCELLED.value
        )
        if host_id is not None:
            statement = statement.where(c.host_id == host_id)
        rows = self._db.query(statement.order_by(latest.desc()).limit(limit))
        return [_space(r) for r in rows]

    def set_in_feed(self, space_id: str, in_feed: bool) -> Space:
        """Let a space into the podcast feeds, or keep it out."""
        with self._db.transaction() as conn:
            done = conn.execute(
                update(spaces).where(spaces.c.id == space_id).values(in_feed=in_feed)
            )
            if done.rowcount == 0:
                raise NotFound(f"no space with id {space_id!r}")
        self.forget(space_id)
        return self.get(space_id)

    def set_replay(self, space_id: str, size: int, seconds: float) -> None:
        """Record the replay file's size and duration, once it is written (from any
        thread: the cached reads, which do not show them, are left as they are)."""
        with self._db.transaction() as conn:
            conn.execute(
                update(spaces)
                .where(spaces.c.id == space_id)
                .values(replay_bytes=size, replay_seconds=seconds)
            )

    def count_by_status(self) -> dict[SpaceStatus, int]:
        counts = dict.fromkeys(SpaceStatus, 0)
        statement = select(spaces.c.status, func.count()).group_by(spaces.c.status)
        for status, count in self._db.query(statement):
            counts[SpaceStatus(status)] = count
        return counts

    def transition(self, space_id: str, action: Action, actor_id: str, now: float) -> Space:
        """Apply a lifecycle action atomically (two concurrent ends cannot both win)."""
        with self._db.transaction() as conn:
            # FOR UPDATE: on PostgreSQL, two nodes ending one space at once take turns.
            rows = conn.execute(
                select(spaces).where(spaces.c.id == space_id).with_for_update()
            ).all()
            if not rows:
                raise NotFound(f"no space with id {space_id!r}")
            after = apply(_space(rows[0]), action, actor_id, now)
            conn.execute(
                update(spaces)
                .where(spaces.c.id == space_id)
                .values(
                    status=after.status.value, started_at=after.started_at, ended_at=after.ended_at
                )
            )
        return self._remember(after, now)
