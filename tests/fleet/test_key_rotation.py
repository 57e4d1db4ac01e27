"""Rotating the signing key: with the old one as ``previous_secret_key``, tickets and
invites it signed stay good while new ones are signed with the new key; once it is
dropped, they are refused (401), never honoured by accident."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx

from harness import SHARED_SERVER_ENV, Server, make_account, start_server

OLD, NEW = secrets.token_urlsafe(40), secrets.token_urlsafe(40)


def _start(data: Path, key: str, previous: str | None = None) -> Server:
    env = {**SHARED_SERVER_ENV, "PODIUM_SECRET_KEY": key}
    if previous is not None:
        env["PODIUM_PREVIOUS_SECRET_KEY"] = previous
    return start_server(data, env=env)


def _beacon(server: Server, space_id: str, ticket: str) -> int:
    answer = httpx.post(
        f"{server.url}/api/v1/spaces/{space_id}/beacon", json={"ticket": ticket}, timeout=10
    )
    return answer.status_code


def test_tickets_and_invites_outlive_a_key_rotation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = _start(data, OLD)
    try:
        host = make_account(server, "rotating_host")
        with server.client(host.token) as api:
            space = api.post("/api/v1/spaces", json={"title": "Rotation"}).json()
            assert api.post(f"/api/v1/spaces/{space['id']}/start").is_success
            invite = api.post(f"/api/v1/spaces/{space['id']}/invites").json()["invite"]
        space_id = space["id"]
        old_ticket = httpx.post(f"{server.url}/api/v1/spaces/{space_id}/join").json()["ticket"]
        assert _beacon(server, space_id, old_ticket) == 204
    finally:
        server.stop()

    server = _start(data, NEW, previous=OLD)
    try:
        assert _beacon(server, space_id, old_ticket) == 204
        new_ticket = httpx.post(f"{server.url}/api/v1/spaces/{space_id}/join").json()["ticket"]
        assert _beacon(server, space_id, new_ticket) == 204
        accepted = httpx.post(
            f"{server.url}/api/v1/spaces/{space_id}/invites/accept",
            json={"invite": invite, "ticket": old_ticket, "name": "Guest"},
            timeout=10,
        )
        assert accepted.status_code != 401, accepted.text
    finally:
        server.stop()

    server = _start(data, NEW)
    try:
        assert _beacon(server, space_id, old_ticket) == 401
        assert _beacon(server, space_id, new_ticket) == 204
        refused = httpx.post(
            f"{server.url}/api/v1/spaces/{space_id}/invites/accept",
            json={"invite": invite, "ticket": new_ticket, "name": "Guest"},
            timeout=10,
        )
        assert refused.status_code == 401
        assert "not valid" in refused.json()["detail"]
    finally:
        server.stop()
