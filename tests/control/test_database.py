"""The control plane's database on SQLite and on a real PostgreSQL: migrations, adopting
the last release's schema with its data, refusing a schema this Podium does not know."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy

from harness import PODIUM, start_server
from podium.control.accounts import Accounts
from podium.control.credentials import Credential, hash_secret
from podium.control.db import Database, database_url
from podium.control.lifecycle import Action, SpaceStatus
from podium.control.rooms import Rooms
from podium.control.spaces import Spaces
from podium.control.stage import Stage
from podium.errors import StorageError
from services import Postgres

FIXTURES = Path(__file__).parent / "fixtures"
HEAD = "0004"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url("", tmp_path)
    cluster: Postgres = request.getfixturevalue("postgres")
    return database_url(cluster.create_database("schema"), tmp_path)


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(url)
    yield database
    database.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODIUM, *args], capture_output=True, text=True, check=False, timeout=60)


def test_an_empty_database_is_upgraded_once_and_then_left_alone(db: Database) -> None:
    assert db.schema().current is None
    before, after = db.upgrade()
    assert before.current is None
    assert after.current == after.head == HEAD
    assert after.up_to_date
    again, _ = db.upgrade()
    assert again.up_to_date
    db.require_current()


def test_upgrading_from_the_first_revision_keeps_its_data(db: Database) -> None:
    db.upgrade("0001")
    with pytest.raises(StorageError, match="run `podium migrate`"):
        db.require_current()
    with db.transaction() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO users (id, handle, display_name, is_admin, created_at)"
                " VALUES ('u1', 'early', 'Early', 0, 5.0)"
            )
        )
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO spaces (id, host_id, title, description, status, created_at)"
                " VALUES ('s1', 'u1', 'First', '', 'scheduled', 6.0)"
            )
        )
    before, after = db.upgrade()
    assert (before.current, after.current) == ("0001", HEAD)
    user = Accounts(db).get_user("u1")
    assert (user.handle, user.display_name, user.created_at) == ("early", "Early", 5.0)
    spaces = Spaces(db)
    assert spaces.get("s1").title == "First"
    # And the tables the upgrade added work with the rows from before it.
    rooms = Rooms(db)
    rooms.ensure("s1", "u:u1", "Early")
    assert rooms.stage("s1").role_of("u:u1") is not None
    assert spaces.transition("s1", Action.START, "u1", 10.0).status is SpaceStatus.LIVE


def test_the_data_layer_is_the_same_on_both_databases(db: Database) -> None:
    db.upgrade()
    accounts, spaces, rooms = Accounts(db), Spaces(db), Rooms(db)
    user = accounts.create_user("both_dbs", "Both", None, 1.0)
    token_info, token = accounts.issue_token(user.id, "t", 2.0)
    assert accounts.authenticate_token(token, 3.0).id == user.id
    assert accounts.list_tokens(user.id)[0].last_used_at == 3.0
    accounts.revoke_token(user.id, token_info.id, 4.0)
    accounts.revoke_token(user.id, token_info.id, 9.0)  # the first revocation time stays
    assert accounts.list_tokens(user.id)[0].revoked_at == 4.0
    space = spaces.create(user.id, "Both", "", None, 5.0)
    rooms.create(space.id, "u:" + user.id, "Both")
    rooms.ensure(space.id, "u:" + user.id, "Both")  # already there: nothing changes
    assert spaces.count_by_status()[SpaceStatus.SCHEDULED] == 1
    rooms.save_audience(space.id, {"peak": 1})
    rooms.save_audience(space.id, {"peak": 2})
    assert rooms.saved_audience(space.id) == {"peak": 2}
    assert [s.id for s in spaces.recent(SpaceStatus.SCHEDULED)] == [space.id]


def test_a_live_space_from_before_media_nodes_is_anyone_s_until_claimed(db: Database) -> None:
    db.upgrade("0002")
    with db.transaction() as conn:
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO users (id, handle, display_name, is_admin, created_at)"
                " VALUES ('u2', 'live_host', 'Live', 0, 1.0)"
            )
        )
        conn.execute(
            sqlalchemy.text(
                "INSERT INTO spaces (id, host_id, title, description, status, created_at,"
                " started_at) VALUES ('live1', 'u2', 'On air', '', 'live', 1.0, 2.0)"
            )
        )
    db.upgrade()
    spaces = Spaces(db)
    assert spaces.live_ids() == ["live1"]
    assert spaces.live_ids("node-a") == ["live1"]  # unclaimed: a lone node resumes it
    spaces.claim_media("live1", "node-a")
    assert spaces.live_ids("node-a") == ["live1"]
    assert spaces.live_ids("node-b") == []
    assert spaces.not_live(["live1"]) == []
    spaces.transition("live1", Action.END, "u2", 3.0)
    assert spaces.not_live(["live1", "nosuch"]) == ["live1"]


def _legacy_sqlite(data: Path) -> tuple[str, str]:
    """A data directory as the last release left it: its schema, numbered by
    ``user_version``, with an owner, a token, and an ended space with its stage and audit.
    Returns the token and the space id."""
    data.mkdir()
    credential = Credential.new("pdm")
    stage = Stage.new("u:owner1", "Owner")
    with sqlite3.connect(data / "podium.sqlite3") as conn:
        conn.executescript((FIXTURES / "schema-user-version-2.sql").read_text())
        conn.execute(
            "INSERT INTO users VALUES ('owner1', 'owner', 'Owner', NULL, 1, 1.0)",
        )
        conn.execute(
            "INSERT INTO api_tokens VALUES (?, 'owner1', 'owner (first start)', ?, 1.0,"
            " NULL, NULL)",
            (credential.id, hash_secret(credential.secret)),
        )
        conn.execute(
            "INSERT INTO spaces VALUES ('oldspace01', 'owner1', 'Before the upgrade', '',"
            " 'ended', NULL, 2.0, 3.0, 4.0)"
        )
        conn.execute("INSERT INTO stages VALUES ('oldspace01', ?)", (json.dumps(stage.to_json()),))
        conn.execute(
            "INSERT INTO audit (space_id, at, actor, action, target, detail)"
            " VALUES ('oldspace01', 3.5, 'u:owner1', 'mute', 'u:owner1', '')"
        )
    return credential.render(), "oldspace01"


def test_the_last_release_s_database_is_adopted_with_its_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token, space_id = _legacy_sqlite(data)
    checked = _cli("migrate", "--data", str(data), "--check")
    assert checked.returncode == 3, checked
    migrated = _cli("migrate", "--data", str(data))
    assert migrated.returncode == 0, migrated.stderr
    assert f"upgraded from revision 0002 (as an older Podium numbered it) to revision {HEAD}" in (
        migrated.stdout
    )
    assert _cli("migrate", "--data", str(data), "--check").returncode == 0
    running = start_server(data)
    try:
        with running.client(token) as owner:
            me = owner.get("/api/v1/me")
            assert me.status_code == 200, me.text
            assert me.json()["handle"] == "owner"
            space = owner.get(f"/api/v1/spaces/{space_id}").json()
            assert (space["title"], space["status"]) == ("Before the upgrade", "ended")
            assert owner.get(f"/api/v1/spaces/{space_id}/audit").status_code == 200
    finally:
        assert running.stop() == 0


def test_serve_upgrades_the_last_release_s_embedded_database_by_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token, space_id = _legacy_sqlite(data)
    running = start_server(data)
    try:
        with running.client(token) as owner:
            assert owner.get(f"/api/v1/spaces/{space_id}").json()["status"] == "ended"
    finally:
        running.stop()
    assert _cli("migrate", "--data", str(data), "--check").returncode == 0


def test_serve_refuses_a_schema_made_by_a_newer_podium(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    newer = Database(database_url("", data))
    newer.upgrade()
    with newer.transaction() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '0999'"))
    newer.close()
    refused = _cli("serve", "--data", str(data), "--port", "0")
    assert refused.returncode == 1
    assert "schema revision '0999', which this Podium does not know" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _cli("migrate", "--data", str(data)).returncode == 1


def test_serve_refuses_a_postgresql_database_not_migrated(
    postgres: Postgres, tmp_path: Path
) -> None:
    url = postgres.create_database("unmigrated")
    refused = _cli("serve", "--data", str(tmp_path / "data"), "--port", "0", "--database-url", url)
    assert refused.returncode == 1
    assert "is empty; this Podium needs revision" in refused.stderr
    assert "run `podium migrate`" in refused.stderr
    assert "Traceback" not in refused.stderr
    older = Database(database_url(url, tmp_path))
    older.upgrade("0001")
    older.close()
    assert _cli("migrate", "--database-url", url, "--check").returncode == 3
    refused = _cli("serve", "--data", str(tmp_path / "data"), "--port", "0", "--database-url", url)
    assert "is at revision '0001'" in refused.stderr


def test_two_nodes_migrating_at_once_take_turns(postgres: Postgres) -> None:
    url = postgres.create_database("racing")
    racers = [
        subprocess.Popen(
            [*PODIUM, "migrate", "--database-url", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outcomes = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0], outcomes
    said = [out for out, _ in outcomes]
    assert sum("upgraded from empty" in out for out in said) >= 1
    assert _cli("migrate", "--database-url", url, "--check").returncode == 0


def test_a_password_in_the_database_url_is_never_shown(postgres: Postgres, tmp_path: Path) -> None:
    url = postgres.url("nosuchdb").replace("podium@", "podium:hunter2secret@")
    refused = _cli("migrate", "--database-url", url)
    assert refused.returncode == 1
    assert "hunter2secret" not in refused.stderr + refused.stdout
    assert "unreachable" in refused.stderr or "database" in refused.stderr
