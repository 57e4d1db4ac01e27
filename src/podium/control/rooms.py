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

from podium.control.db import Database
from podium.control.stage import AuditEntry, Outcome, Stage
from podium.errors import NotFound

AUDIT_PAGE = 500


class Rooms:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, space_id: str, host: str, host_name: str) -> Stage:
        stage = Stage.new(host, host_name)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO stages (space_id, document) VALUES (?, ?)",
                (space_id, json.dumps(stage.to_json())),
            )
        return stage

    def ensure(self, space_id: str, host: str, host_name: str) -> None:
        """Create the space's stage if it has none (spaces made before rooms existed)."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO stages (space_id, document) VALUES (?, ?)",
                (space_id, json.dumps(Stage.new(host, host_name).to_json())),
            )

    def stage(self, space_id: str) -> Stage:
        rows = self._db.query("SELECT document FROM stages WHERE space_id = ?", (space_id,))
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
            rows = conn.execute(
                "SELECT document FROM stages WHERE space_id = ?", (space_id,)
            ).fetchall()
            if not rows:
                raise NotFound(f"no room for space {space_id!r}")
            before = Stage.from_json(json.loads(rows[0][0]))
            after, entry = action(before)
            if after is not before:
                conn.execute(
                    "UPDATE stages SET document = ? WHERE space_id = ?",
                    (json.dumps(after.to_json()), space_id),
                )
                conn.execute(
                    "INSERT INTO audit (space_id, at, actor, action, target, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        space_id,
                        entry.at,
                        entry.actor,
                        entry.action.value,
                        entry.target,
                        entry.detail,
                    ),
                )
        return before, after

    def audit(self, space_id: str, after_id: int = 0) -> list[tuple[int, AuditEntry]]:
        rows = self._db.query(
            "SELECT id, at, actor, action, target, detail FROM audit"
            " WHERE space_id = ? AND id > ? ORDER BY id LIMIT ?",
            (space_id, after_id, AUDIT_PAGE),
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
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO audience (space_id, document) VALUES (?, ?)"
                " ON CONFLICT(space_id) DO UPDATE SET document = excluded.document",
                (space_id, json.dumps(document)),
            )

    def saved_audience(self, space_id: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT document FROM audience WHERE space_id = ?", (space_id,))
        return dict(json.loads(rows[0][0])) if rows else None
