"""Anonymous joins are answered outside the framework (podium.web.joinpath); joins with
credentials go through the route. Both must give the same answers to the same bodies, and
the fast path must keep what every route has: limits, CORS, metrics, problem documents."""

from __future__ import annotations

import httpx
import pytest

from harness import Account, Server, assert_problem, make_account

JOIN_ROUTE = "/api/v1/spaces/{space_id}/join"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def live_space(server: Server, account: Account) -> str:
    with server.client(account.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Fast path"}).json()
        assert client.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
    return str(space["id"])


BODIES: list[tuple[str, bytes, dict[str, str], int, str | None]] = [
    # (what, body, headers, status, problem type)
    ("no body", b"", {}, 200, None),
    ("JSON null", b"null", {"Content-Type": "application/json"}, 200, None),
    ("empty object", b"{}", {"Content-Type": "application/json"}, 200, None),
    ("no content type", b"{}", {}, 400, "malformed-json"),
    ("a +json type", b"{}", {"Content-Type": "application/merge-patch+json"}, 200, None),
    (
        "broken JSON",
        b'{"queue_token": ',
        {"Content-Type": "application/json"},
        400,
        "malformed-json",
    ),
    ("not UTF-8", b"{\xff}", {"Content-Type": "application/json"}, 400, "malformed-json"),
    ("unknown field", b'{"vip": true}', {"Content-Type": "application/json"}, 422, "invalid-input"),
    (
        "wrong type",
        b'{"pow": "solved"}',
        {"Content-Type": "application/json"},
        422,
        "invalid-input",
    ),
    (
        "nonce too long",
        b'{"pow": {"token": "t", "nonce": "' + b"9" * 33 + b'"}}',
        {"Content-Type": "application/json"},
        422,
        "invalid-input",
    ),
    (
        "forged queue token",
        b'{"queue_token": "q1.forged.token"}',
        {"Content-Type": "application/json"},
        400,
        None,
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "headers", "status", "kind"), BODIES, ids=[b[0] for b in BODIES]
)
def test_the_fast_path_and_the_route_answer_alike(
    server: Server,
    live_space: str,
    what: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    kind: str | None,
) -> None:
    url = f"/api/v1/spaces/{live_space}/join"
    signed_in = make_account(server, "joiner")
    with server.client() as anonymous, server.client(signed_in.token) as route:
        fast = anonymous.post(url, content=body, headers=headers)
        framework = route.post(url, content=body, headers=headers)
    if status == 200:
        assert fast.status_code == framework.status_code == 200, (fast.text, framework.text)
        assert fast.json()["status"] == framework.json()["status"] == "admitted"
        assert fast.json()["listener_id"].startswith("l:")  # anonymous: a guest ticket
        assert framework.json()["listener_id"] == f"u:{signed_in.id}"
        return
    answers = [fast, framework]
    for answer in answers:
        assert 400 <= answer.status_code < 500, answer.text
    assert fast.status_code == framework.status_code, (fast.text, framework.text)
    if what != "not UTF-8":  # the framework calls it a bad request, without saying why
        assert fast.json()["type"] == framework.json()["type"]
    if kind is not None:
        assert_problem(fast, status, kind)


def test_a_text_body_is_refused_by_both(server: Server, live_space: str, account: Account) -> None:
    url = f"/api/v1/spaces/{live_space}/join"
    headers = {"Content-Type": "text/plain"}
    with server.client() as anonymous, server.client(account.token) as route:
        fast = anonymous.post(url, content=b'{"queue_token": null}', headers=headers)
        framework = route.post(url, content=b'{"queue_token": null}', headers=headers)
    assert_problem(fast, 400, "malformed-json")
    assert fast.status_code == framework.status_code
    assert fast.json()["detail"] == framework.json()["detail"]


def test_unknown_and_cancelled_spaces_answer_as_problems(server: Server, account: Account) -> None:
    with server.client() as anonymous:
        assert_problem(anonymous.post("/api/v1/spaces/nosuchspace/join"), 404)
    with server.client(account.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Called off"}).json()
        assert client.post(f"/api/v1/spaces/{space['id']}/cancel").status_code == 200
    with server.client() as anonymous:
        assert_problem(anonymous.post(f"/api/v1/spaces/{space['id']}/join"), 409)


def _joins_counted(server: Server, status: int) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    line = f'podium_http_requests_total{{method="POST",route="{JOIN_ROUTE}",status="{status}"}} '
    found = [float(m.split()[-1]) for m in metrics.splitlines() if m.startswith(line)]
    return found[0] if found else 0.0


def test_the_fast_path_keeps_the_guard_cors_and_metrics(server: Server, live_space: str) -> None:
    url = f"{server.url}/api/v1/spaces/{live_space}/join"
    joined, refused = _joins_counted(server, 200), _joins_counted(server, 400)
    with httpx.Client(timeout=10) as http:
        # The body limit of every route applies (RequestGuard is outside the fast path).
        huge = http.post(url, content=b"{" + b" " * (2 << 20) + b"}")
        assert_problem(huge, 413, "too-large")
        # Chunked, with no length to refuse it by: cut off while it streams in, quietly.
        chunks = iter([b"{" + b" " * (64 << 10)] * 40)
        streamed = http.post(url, content=chunks, headers=JSON)
        assert_problem(streamed, 413, "too-large")
        assert not [line for line in server.stderr_lines if "unhandled_error" in line]
        # A page on another origin may join (no credentials ride along cross-origin).
        cross = http.post(url, headers={"Origin": "https://embed.example"})
        assert cross.status_code == 200, cross.text
        assert cross.headers["access-control-allow-origin"] == "*"
        assert cross.headers["cache-control"] == "no-store"
        assert_problem(http.post(url, content=b"[]", headers=JSON), 400)
    # The access metrics count these under the route, as for joins the router served.
    assert _joins_counted(server, 200) == joined + 1
    assert _joins_counted(server, 400) == refused + 1


def test_paths_that_only_look_like_a_join_go_to_the_router(server: Server, live_space: str) -> None:
    with server.client() as anonymous:
        assert anonymous.post(f"/api/v1/spaces/{live_space}/join/").status_code in (307, 404)
        assert_problem(anonymous.post(f"/api/v1/spaces/{live_space}/join/x"), 404)
        assert_problem(anonymous.post("/api/v1/spaces//join"), 404)
        # GET is not a join: the route only takes POST.
        assert anonymous.get(f"/api/v1/spaces/{live_space}/join").status_code == 405


BEACON_ROUTE = "/api/v1/spaces/{space_id}/beacon"


def _beacons_counted(server: Server, status: int) -> float:
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    line = f'podium_http_requests_total{{method="POST",route="{BEACON_ROUTE}",status="{status}"}} '
    found = [float(m.split()[-1]) for m in metrics.splitlines() if m.startswith(line)]
    return found[0] if found else 0.0


def test_beacons_are_answered_alike_on_the_fast_path_and_the_route(
    server: Server, live_space: str
) -> None:
    """A well-formed beacon is answered outside the framework; anything else goes on to
    the route. Either way: the same statuses, problems, CORS and metrics."""
    url = f"{server.url}/api/v1/spaces/{live_space}/beacon"
    ok, unauthenticated = _beacons_counted(server, 204), _beacons_counted(server, 401)
    with httpx.Client(timeout=10) as http:
        ticket = http.post(f"{server.url}/api/v1/spaces/{live_space}/join").json()["ticket"]
        beaconed = http.post(url, json={"ticket": ticket}, headers={"Origin": "https://e.example"})
        assert beaconed.status_code == 204, beaconed.text
        assert beaconed.headers["access-control-allow-origin"] == "*"
        assert_problem(http.post(url, json={"ticket": "forged.ticket.value"}), 401)
        # Other spaces' tickets are no good here either.
        assert_problem(
            http.post(url.replace(live_space, "nosuchspace"), json={"ticket": ticket}), 401
        )
        # Bodies the fast path does not take: the route's answers.
        assert_problem(http.post(url, json={"ticket": ticket, "vip": True}), 422, "invalid-input")
        assert_problem(http.post(url, json={}), 422, "invalid-input")
        assert_problem(http.post(url, content=b"[]", headers=JSON), 400, "malformed-json")
        assert_problem(http.post(url, content=b'{"ticket": ', headers=JSON), 400)
        assert 400 <= http.post(url, content=b"", headers=JSON).status_code < 500
        assert_problem(http.post(url, json={"ticket": "x" * 601}), 422, "invalid-input")
    assert _beacons_counted(server, 204) == ok + 1
    assert _beacons_counted(server, 401) == unauthenticated + 2
