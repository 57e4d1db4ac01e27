"""Spaces over the HTTP API: lifecycle, permissions and bad input."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest

from harness import Server, assert_problem, make_account


def test_lifecycle_through_the_api(server: Server) -> None:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        created = client.post(
            "/api/v1/spaces", json={"title": "  Morning talk ", "description": "Coffee & code"}
        )
        assert created.status_code == 201, created.text
        space = created.json()
        assert space["title"] == "Morning talk"
        assert space["status"] == "scheduled"
        assert space["host"]["handle"] == host.handle
        assert space["page_url"] == f"{server.url}/s/{space['id']}"

        live = client.post(f"/api/v1/spaces/{space['id']}/start").json()
        assert live["status"] == "live"
        assert live["started_at"] is not None
        ids = [s["id"] for s in client.get("/api/v1/spaces?status=live").json()["spaces"]]
        assert space["id"] in ids

        ended = client.post(f"/api/v1/spaces/{space['id']}/end").json()
        assert ended["status"] == "ended"
        assert ended["ended_at"] >= ended["started_at"]
        again = client.post(f"/api/v1/spaces/{space['id']}/end")
        assert "already" not in assert_problem(again, 409, "invalid-transition")["detail"]

    with server.client() as anon:  # listening needs no account
        public = anon.get(f"/api/v1/spaces/{space['id']}")
        assert public.json()["status"] == "ended"
        page = anon.get(f"/s/{space['id']}")
        assert page.status_code == 200
        assert "Morning talk" in page.text
        assert "Coffee &amp; code" in page.text


def test_scheduled_space_and_listing_order(server: Server) -> None:
    host = make_account(server, "host")
    soon = datetime.now(UTC) + timedelta(hours=1)
    later = soon + timedelta(hours=1)
    with server.client(host.token) as client:
        b = client.post(
            "/api/v1/spaces", json={"title": "later", "scheduled_start": later.isoformat()}
        )
        a = client.post(
            "/api/v1/spaces",
            json={"title": "soon", "scheduled_start": soon.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )
        assert a.status_code == b.status_code == 201, a.text
        assert a.json()["scheduled_start"].startswith(soon.strftime("%Y-%m-%dT%H:%M:%S"))
        upcoming = [
            s["id"]
            for s in client.get("/api/v1/spaces?status=scheduled&limit=200").json()["spaces"]
        ]
        assert upcoming.index(a.json()["id"]) < upcoming.index(b.json()["id"])
        cancelled = client.post(f"/api/v1/spaces/{a.json()['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert_problem(client.post(f"/api/v1/spaces/{a.json()['id']}/start"), 409)


def test_only_the_host_may_start_or_end(server: Server) -> None:
    host, other = make_account(server, "host"), make_account(server, "other")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "mine"}).json()
    with server.client(other.token) as client:
        for action in ("start", "end", "cancel"):
            refused = client.post(f"/api/v1/spaces/{space['id']}/{action}")
            assert "only the host" in assert_problem(refused, 403, "forbidden")["detail"]
    with server.client(server.owner_token) as admin:  # an admin is not the host either
        assert_problem(admin.post(f"/api/v1/spaces/{space['id']}/start"), 403)
    with server.client() as anon:
        assert_problem(anon.post(f"/api/v1/spaces/{space['id']}/start"), 401)
    with server.client(host.token) as client:
        assert client.get(f"/api/v1/spaces/{space['id']}").json()["status"] == "scheduled"


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"title": "x", "colour": "red"}, "body.colour"),
        ({"title": 42}, "body.title"),
        ({"title": ""}, "body.title"),
        ({"title": "x" * 121}, "body.title"),
        ({"title": "x", "description": ["a"]}, "body.description"),
        ({"title": "x", "scheduled_start": "tomorrow"}, "body.scheduled_start"),
        ({}, "body.title"),
    ],
)
def test_bad_space_bodies_are_refused(server: Server, body: dict[str, object], where: str) -> None:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        problem = assert_problem(client.post("/api/v1/spaces", json=body), 422, "invalid-input")
    assert problem["detail"].startswith(where)  # type: ignore[union-attr]
    assert any(e["where"] == where for e in problem["errors"])  # type: ignore[attr-defined]


def test_schedule_in_the_past_or_without_offset(server: Server) -> None:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        past = client.post(
            "/api/v1/spaces", json={"title": "x", "scheduled_start": "2001-01-01T00:00:00Z"}
        )
        assert "past" in assert_problem(past, 422)["detail"]
        naive = client.post(
            "/api/v1/spaces", json={"title": "x", "scheduled_start": "2099-01-01T00:00:00"}
        )
        assert "UTC offset" in assert_problem(naive, 422)["detail"]


def test_malformed_json_and_wrong_shapes(server: Server) -> None:
    host = make_account(server, "host")
    with server.client(host.token) as client:
        headers = {"Content-Type": "application/json"}
        broken = client.post("/api/v1/spaces", content=b'{"title": ', headers=headers)
        assert_problem(broken, 400, "malformed-json")
        array = client.post("/api/v1/spaces", content=b'["title"]', headers=headers)
        assert_problem(array, 400, "malformed-json")
        text = client.post(
            "/api/v1/spaces", content=b"title=x", headers={"Content-Type": "text/plain"}
        )
        assert text.status_code in (400, 415, 422)
        assert text.headers["content-type"].startswith("application/problem+json")


def test_oversized_bodies_are_cut_off(server: Server) -> None:
    host = make_account(server, "host")
    big = {"title": "x", "description": "y" * 200_000}
    with server.client(host.token) as client:
        assert_problem(client.post("/api/v1/spaces", json=big), 413, "too-large")

        def chunks():  # no Content-Length: the limit must hold while streaming
            for _ in range(100):
                yield b" " * 4096

        streamed = client.post(
            "/api/v1/spaces", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(streamed, 413)
        assert client.get("/api/v1/me").status_code == 200


def test_lying_content_length_does_not_hang_or_crash(server: Server) -> None:
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/spaces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999\r\n\r\n{}"
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413")
    with server.client() as anon:
        assert anon.get("/livez").status_code == 200


def test_unknown_space_and_routes(server: Server) -> None:
    with server.client() as anon:
        assert_problem(anon.get("/api/v1/spaces/doesnotexist"), 404, "not-found")
        assert_problem(anon.get("/api/v1/nothing-here"), 404)
        assert_problem(anon.delete("/api/v1/spaces"), 405)
        page = anon.get("/s/doesnotexist")
        assert page.status_code == 404
        assert "No such space" in page.text
        assert_problem(anon.get("/api/v1/spaces?status=paused"), 422)
        assert_problem(anon.get("/api/v1/spaces?limit=100000"), 422)


def test_path_tricks_find_nothing(server: Server) -> None:
    with httpx.Client(base_url=server.url) as anon:
        for path in (
            "/static/../../etc/passwd",
            "/static/%2e%2e/%2e%2e/etc/passwd",
            "/docs/assets/..%2f..%2fpodium.sqlite3",
            "/s/..%2f..%2fetc%2fpasswd",
        ):
            response = anon.get(path)
            assert response.status_code == 404, path
            assert "root:" not in response.text
