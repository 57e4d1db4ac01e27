"""Accounts, API tokens and browser sessions over real HTTP against ``podium serve``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from harness import Server, assert_problem, make_account, start_server, unique_handle


def test_sign_up_sign_in_and_me(server: Server) -> None:
    handle = unique_handle("signup")
    with server.client() as anon:
        created = anon.post(
            "/api/v1/users",
            json={"handle": handle, "display_name": "Test Listener", "password": "long enough pw"},
        )
        assert created.status_code == 201, created.text
        assert created.json()["display_name"] == "Test Listener"
        assert "password" not in created.text
        issued = anon.post("/api/v1/tokens", json={"handle": handle, "password": "long enough pw"})
        assert issued.status_code == 201
        token = issued.json()["token"]
        assert token.startswith("pdm_")
    with server.client(token) as me:
        assert me.get("/api/v1/me").json()["handle"] == handle


def test_signup_refusals(server: Server) -> None:
    with server.client() as anon:
        assert_problem(anon.post("/api/v1/users", json={"handle": unique_handle()}), 422)
        assert_problem(
            anon.post("/api/v1/users", json={"handle": "Bad Handle!", "password": "x" * 12}), 422
        )
        assert_problem(
            anon.post("/api/v1/users", json={"handle": unique_handle(), "password": "short"}), 422
        )
        assert_problem(
            anon.post("/api/v1/users", json={"handle": "owner", "password": "x" * 12}),
            409,
            "conflict",
        )


def test_only_admins_create_accounts_for_others(server: Server) -> None:
    user = make_account(server)
    with server.client(user.token) as client:
        refused = client.post(
            "/api/v1/users", json={"handle": unique_handle(), "password": "x" * 12}
        )
        assert_problem(refused, 403, "forbidden")


def test_wrong_password_and_unknown_handle_look_the_same(server: Server) -> None:
    user = make_account(server)
    with server.client() as anon:
        wrong = anon.post("/api/v1/tokens", json={"handle": user.handle, "password": "nope" * 3})
        unknown = anon.post("/api/v1/tokens", json={"handle": "nobody_here", "password": "x" * 12})
    assert assert_problem(wrong, 401)["detail"] == assert_problem(unknown, 401)["detail"]
    assert wrong.headers["www-authenticate"].startswith("Bearer")


def test_bad_tokens_are_refused_cleanly(server: Server) -> None:
    for header in (
        "Bearer pdm_notreal.notreal",
        "Bearer " + "x" * 5000,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer pdm_aaaaaaaaaaaa." + "A" * 43,
    ):
        with httpx.Client(base_url=server.url, headers={"Authorization": header}) as client:
            assert_problem(client.get("/api/v1/me"), 401, "unauthenticated")
            space = client.post("/api/v1/spaces", json={"title": "x"})
            assert_problem(space, 401)


def test_a_password_signs_in_whatever_token_comes_with_it(server: Server) -> None:
    """A stale or foreign bearer token sent along with handle and password does not turn
    the sign-in into a refusal: the password decides, and says who is signing in."""
    user = make_account(server)
    foreign = {"Authorization": "Bearer pdm_aaaaaaaaaaaa." + "A" * 43}
    with httpx.Client(base_url=server.url, headers=foreign) as client:
        issued = client.post(
            "/api/v1/tokens", json={"handle": user.handle, "password": user.password}
        )
        assert issued.status_code == 201, issued.text
        wrong = client.post("/api/v1/tokens", json={"handle": user.handle, "password": "n" * 12})
        assert_problem(wrong, 401)
        assert_problem(client.post("/api/v1/tokens", json={"name": "x"}), 401)
    with server.client(issued.json()["token"]) as mine:
        assert mine.get("/api/v1/me").json()["handle"] == user.handle


def test_tokens_can_be_listed_and_revoked(server: Server) -> None:
    user = make_account(server)
    with server.client(user.token) as client:
        second = client.post("/api/v1/tokens", json={"name": "bot"}).json()
        listed = client.get("/api/v1/tokens").json()["tokens"]
        assert {t["name"] for t in listed} == {"test", "bot"}
        assert all("token" not in t for t in listed)
        assert client.delete(f"/api/v1/tokens/{second['id']}").status_code == 204
    with server.client(second["token"]) as revoked:
        assert "revoked" in assert_problem(revoked.get("/api/v1/me"), 401)["detail"]
    with server.client(user.token) as client:
        assert client.get("/api/v1/me").status_code == 200
        again = client.get("/api/v1/tokens").json()["tokens"]
        assert next(t for t in again if t["id"] == second["id"])["revoked_at"] is not None


def test_cannot_revoke_another_users_token(server: Server) -> None:
    owner, other = make_account(server), make_account(server)
    with server.client(owner.token) as client:
        owner_tokens = client.get("/api/v1/tokens").json()["tokens"]
    with server.client(other.token) as client:
        assert_problem(client.delete(f"/api/v1/tokens/{owner_tokens[0]['id']}"), 404)
    with server.client(owner.token) as client:
        assert client.get("/api/v1/me").status_code == 200


def test_browser_session_with_csrf(server: Server) -> None:
    user = make_account(server)
    with httpx.Client(base_url=server.url) as browser:
        signed_in = browser.post(
            "/api/v1/session", json={"handle": user.handle, "password": user.password}
        )
        assert signed_in.status_code == 200
        cookie_header = ";".join(signed_in.headers.get_list("set-cookie")).lower()
        assert "httponly" in cookie_header
        assert "samesite=lax" in cookie_header
        csrf = signed_in.json()["csrf_token"]
        assert browser.get("/api/v1/me").json()["handle"] == user.handle
        # A write without the CSRF header is what a forged cross-site form would send.
        forged = browser.post("/api/v1/spaces", json={"title": "forged"})
        assert "X-CSRF-Token" in assert_problem(forged, 403)["detail"]
        wrong = browser.post(
            "/api/v1/spaces", json={"title": "forged"}, headers={"X-CSRF-Token": "guess"}
        )
        assert_problem(wrong, 403)
        made = browser.post(
            "/api/v1/spaces", json={"title": "from a browser"}, headers={"X-CSRF-Token": csrf}
        )
        assert made.status_code == 201
        out = browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert_problem(browser.get("/api/v1/me"), 401)


def test_signed_out_session_cookie_is_dead(server: Server) -> None:
    user = make_account(server)
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/api/v1/session", json={"handle": user.handle, "password": user.password})
        stolen = dict(browser.cookies)
        csrf = browser.get("/api/v1/session").json()["csrf_token"]
        browser.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})
    with httpx.Client(base_url=server.url, cookies=stolen) as thief:
        assert_problem(thief.get("/api/v1/me"), 401)


def test_expired_session_is_refused(tmp_path: Path) -> None:
    short = start_server(tmp_path / "data", env={"PODIUM_SESSION_TTL_S": "1"})
    try:
        with short.client(short.owner_token) as admin:
            admin.post("/api/v1/users", json={"handle": "brief", "password": "x" * 12})
        with httpx.Client(base_url=short.url) as browser:
            browser.post("/api/v1/session", json={"handle": "brief", "password": "x" * 12})
            cookies = dict(browser.cookies)
        time.sleep(1.5)
        # A browser would drop the cookie by itself; the server must refuse it regardless.
        with httpx.Client(base_url=short.url, cookies=cookies) as late:
            assert "expired" in assert_problem(late.get("/api/v1/me"), 401)["detail"]
    finally:
        short.stop()


def test_sign_in_is_rate_limited(tmp_path: Path) -> None:
    limited = start_server(
        tmp_path / "data", env={"PODIUM_SIGNIN_BURST": "3", "PODIUM_SIGNIN_PER_MINUTE": "1"}
    )
    try:
        with httpx.Client(base_url=limited.url) as anon:
            answers = [
                anon.post("/api/v1/session", json={"handle": "owner", "password": "x" * 12})
                for _ in range(5)
            ]
        assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
        refused = assert_problem(answers[-1], 429, "rate-limited")
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert refused["retry_after_s"] >= 1
        with httpx.Client(base_url=limited.url) as anon:
            metrics = anon.get("/metrics").text
        assert 'podium_rate_limited_total{scope="signin"} 2.0' in metrics
        assert "podium_signin_failures_total 3.0" in metrics
    finally:
        limited.stop()


def test_closed_signup(tmp_path: Path) -> None:
    closed = start_server(tmp_path / "data", env={"PODIUM_OPEN_SIGNUP": "false"})
    try:
        with closed.client() as anon:
            refused = anon.post("/api/v1/users", json={"handle": "newbie", "password": "x" * 12})
            assert "closed" in assert_problem(refused, 403)["detail"]
        with closed.client(closed.owner_token) as admin:
            made = admin.post("/api/v1/users", json={"handle": "newbie", "password": "x" * 12})
            assert made.status_code == 201
    finally:
        closed.stop()
