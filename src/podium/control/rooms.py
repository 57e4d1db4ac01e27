"""Rooms, stored: each space's stage (roles, hands, blocks) and its moderation audit log.

A stage lives as one JSON document per space, changed atomically under a transaction:
read, apply one pure :class:`~podium.control.stage.Stage` action, write, append the audit
entry. The audience (counts, reactions) is not here: it lives in memory on the node that
hears the beacons (:mod:`podium.control.audience`) and is saved when the space ends.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from podium.control.db import Database
from podium.control.schema import audience, audit, stages
from podium.control.stage import AuditEntry, Outcome, Stage
from podium.errors import NotFound

AUDIT_PAGE = 500


class Rooms:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _upsert(self, table: Table) -> Any:
        """An INSERT that can say what to do ON CONFLICT, in this database's dialect."""
        return (pg_insert if self._db.dialect == "postgresql" else sqlite_insert)(table)

    def create(self, space_id: str, host: str, host_name: str) -> Stage:
        stage = Stage.new(host, host_name)
        with self._db.transaction() as conn:
            conn.execute(
                insert(stages).values(space_id=space_id, document=json.dumps(stage.to_json()))
            )
        return stage

    def ensure(self, space_id: str, host: str, host_name: str) -> None:
        """Create the space's stage if it has none (spaces made before rooms existed)."""
        if self._db.query(select(stages.c.space_id).where(stages.c.space_id == space_id)):
            return  # the common case, and a read: no write lock taken
        document = json.dumps(Stage.new(host, host_name).to_json())
        with self._db.transaction() as conn:
            conn.execute(
                self._upsert(stages)
                .values(space_id=space_id, document=document)
                .on_conflict_do_nothing(index_elements=["space_id"])
            )

    def stage(self, space_id: str) -> Stage:
        rows = self._db.query(select(stages.c.document).where(stages.c.space_id == space_id))
        if not rows:
            raise NotFound(f"no room for space {space_id!r}")
        return Stage.from_json(json.loads(rows[0][0]))

    def act(self, space_id: str, action: Callable[[Stage], Outcome]) -> tuple[Stage, Stage]:
        """Apply ``action`` to the stage atomically; return (before, after).

        The action is a pure function of the stage (a bound :class:`Stage` method with its
        arguments); its audit entry is stored with the new stage in one transaction, or
        nothing is if it raises.
        """
        with self._db.transaction() as conn:
            # FOR UPDATE: on PostgreSQL, two nodes acting on one stage take turns.
            rows = conn.execute(
                select(stages.c.document).where(stages.c.space_id == space_id).with_for_update()
            ).all()
            if not rows:
                raise NotFound(f"no room for space {space_id!r}")
            before = Stage.from_json(json.loads(rows[0][0]))
            after, entry = action(before)
            if after is not before:
                conn.execute(
                    update(stages)
                    .where(stages.c.space_id == space_id)
                    .values(document=json.dumps(after.to_json()))
                )
                conn.execute(
                    insert(audit).values(
                        space_id=space_id,
                        at=entry.at,
                        actor=entry.actor,
                        action=entry.action.value,
                        target=entry.target,
                        detail=entry.detail,
                    )
                )
        return before, after

    def audit(self, space_id: str, after_id: int = 0) -> list[tuple[int, AuditEntry]]:
        c = audit.c
        rows = self._db.query(
            select(c.id, c.at, c.actor, c.action, c.target, c.detail)
            .where(c.space_id == space_id, c.id > after_id)
            .order_by(c.id)
            .limit(AUDIT_PAGE)
        )
        return [
            (
                row[0],
                AuditEntry.from_json(
                    {
                        "at": row[1],
                        "actor": row[2],
                        "action": row[3],
                        "target": row[4],
                        "detail": row[5],
                    }
                ),
            )
            for row in rows
        ]

    def save_audience(self, space_id: str, document: dict[str, Any]) -> None:
        statement = self._upsert(audience).values(space_id=space_id, document=json.dumps(document))
        with self._db.transaction() as conn:
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["space_id"], set_={"document": statement.excluded.document}
                )
            )

    def saved_audience(self, space_id: str) -> dict[str, Any] | None:
        rows = self._db.query(select(audience.c.document).where(audience.c.space_id == space_id))
        return dict(json.loads(rows[0][0])) if rows else None
