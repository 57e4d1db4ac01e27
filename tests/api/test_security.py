"""The security review's findings, each a test (docs/security.md says what is promised and
where each promise is tested): cookies, CSRF on every browser write, secrets at rest,
password hashing, brute force on invites, the data directory's file modes, and secrets
compared in constant time."""

from __future__ import annotations

import ast
import stat
from pathlib import Path
from typing import Any

import argon2
import httpx
import pytest
import sqlalchemy

import podium
from harness import Server, assert_problem, make_account, start_server, unique_handle
from podium.control import accounts as accounts_module
from podium.control.accounts import Accounts
from podium.control.db import Database, database_url
from podium.errors import Unauthenticated

WRITES = ("post", "patch", "delete")
# Writes that take a listener's ticket in the body and nothing else: a cookie is no
# credential there, so a forged request carries nothing of the signed-in account.
TICKET_ONLY = {"post /api/v1/spaces/{space_id}/beacon", "post /api/v1/spaces/{space_id}/reactions"}


def test_cookies_are_secure_behind_https_and_never_readable_by_scripts(tmp_path: Path) -> None:
    behind_tls = start_server(
        tmp_path / "data", env={"PODIUM_PUBLIC_URL": "https://podium.invalid"}
    )
    try:
        with behind_tls.client(behind_tls.owner_token) as admin:
            admin.post("/api/v1/users", json={"handle": "tls", "password": "x" * 12})
        with httpx.Client(base_url=behind_tls.url) as browser:
            signed_in = browser.post(
                "/api/v1/session", json={"handle": "tls", "password": "x" * 12}
            )
            assert signed_in.status_code == 200, signed_in.text
            cookies = {
                header.split("=", 1)[0]: header.lower()
                for header in signed_in.headers.get_list("set-cookie")
            }
    finally:
        behind_tls.stop()
    assert set(cookies) == {"podium_session", "podium_csrf"}
    for name, header in cookies.items():
        assert "; secure" in header, name
        assert "samesite=lax" in header, name
    assert "httponly" in cookies["podium_session"]
    # The CSRF cookie is for the page's script to read and echo; it grants nothing alone.
    assert "httponly" not in cookies["podium_csrf"]


def _fill(path: str, space_id: str) -> str:
    return path.replace("{space_id}", space_id).replace("{", "").replace("}", "")


def test_every_browser_write_needs_the_sessions_csrf_token(server: Server) -> None:
    """Every operation that reads credentials, sent with a session cookie as a forged
    cross-site request would (no X-CSRF-Token), is refused before it does anything."""
    user = make_account(server, "csrf")
    with server.client(user.token) as host:
        space = host.post("/api/v1/spaces", json={"title": "CSRF"}).json()
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    checked: list[str] = []
    writes: set[str] = set()
    with httpx.Client(base_url=server.url, timeout=10) as browser:
        signed_in = browser.post(
            "/api/v1/session", json={"handle": user.handle, "password": user.password}
        )
        assert signed_in.status_code == 200
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                if method not in WRITES:
                    continue
                writes.add(f"{method} {path}")
                if path == "/api/v1/session" and method == "post":
                    continue  # signing in: a password, not a session, is the credential
                if f"{method} {path}" in TICKET_ONLY:
                    continue
                url = _fill(path, space["id"])
                content: Any = operation.get("requestBody", {}).get("content", {})
                kind = next(iter(content), "application/json")
                body = b"{}" if kind == "application/json" else b"v=0\r\n"
                answer = browser.request(
                    method.upper(), url, content=body, headers={"Content-Type": kind}
                )
                problem = assert_problem(answer, 403)
                assert "X-CSRF-Token" in str(problem["detail"]), (method, path, problem)
                checked.append(f"{method} {path}")
        # The session itself still works with its token (the refusals were for CSRF only).
        csrf = signed_in.json()["csrf_token"]
        made = browser.post("/api/v1/spaces", json={"title": "ok"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201
    assert set(checked) == writes - TICKET_ONLY - {"post /api/v1/session"}
    assert "post /api/v1/spaces/{space_id}/whip" in checked


def test_secrets_are_stored_only_hashed(server: Server) -> None:
    user = make_account(server, "hashed")
    with httpx.Client(base_url=server.url) as browser:
        browser.post("/api/v1/session", json={"handle": user.handle, "password": user.password})
        session = browser.cookies["podium_session"]
        csrf = browser.cookies["podium_csrf"]
    stored = _everything_stored(server)
    for secret in (user.token, session, user.password):
        assert secret.encode() not in stored
        # Nor a credential's random part (after its "<prefix>_<id>.") on its own.
        assert secret.rpartition(".")[2].encode() not in stored
    assert csrf  # the CSRF token is not a credential: it is echoed, never enough alone
    engine = sqlalchemy.create_engine(database_url(server.database_url, server.data_dir))
    with engine.connect() as db:
        (password_hash,) = db.execute(
            sqlalchemy.text("SELECT password_hash FROM users WHERE handle = :handle"),
            {"handle": user.handle},
        ).one()
    engine.dispose()
    parameters = argon2.extract_parameters(password_hash)
    # OWASP's floor for Argon2id: 19 MiB, 2 passes, 1 lane.
    assert parameters.type is argon2.Type.ID
    assert parameters.memory_cost >= 19 * 1024
    assert parameters.time_cost >= 2
    assert parameters.parallelism >= 1


def _everything_stored(server: Server) -> bytes:
    """Every byte the server's database holds: the SQLite files as they lie on disk, or
    PostgreSQL's every row, dumped as text."""
    if not server.database_url:
        database = server.data_dir / "podium.sqlite3"
        return b"".join(
            path.read_bytes()
            for path in (database, database.with_name(database.name + "-wal"))
            if path.exists()
        )
    engine = sqlalchemy.create_engine(database_url(server.database_url, server.data_dir))
    dumped: list[str] = []
    with engine.connect() as db:
        for table in sqlalchemy.inspect(db).get_table_names():
            reflected = sqlalchemy.Table(table, sqlalchemy.MetaData(), autoload_with=db)
            rows = db.execute(sqlalchemy.select(reflected)).all()
            dumped += [repr(tuple(row)) for row in rows]
    engine.dispose()
    assert len(dumped) > 2
    return "\n".join(dumped).encode()


def _sqlite(path: Path) -> Database:
    db = Database(database_url("", path.parent))
    db.upgrade()
    return db


def test_an_unknown_handle_costs_the_same_hash_as_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing must not tell whether a handle exists: both refusals run one Argon2
    verification with the same parameters (a hash made at start-up stands in)."""
    accounts = Accounts(_sqlite(tmp_path / "podium.sqlite3"))
    accounts.create_user("known", "Known", accounts_module.hash_password("x" * 12), 0.0)
    verified: list[argon2.Parameters] = []
    real = accounts_module._hasher

    class Counting(argon2.PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            verified.append(argon2.extract_parameters(str(hash)))
            return real.verify(hash, password)

    monkeypatch.setattr(accounts_module, "_hasher", Counting())
    for handle in ("known", "nobody"):
        with pytest.raises(Unauthenticated, match="wrong handle or password"):
            accounts.check_password(handle, "y" * 12)
    assert len(verified) == 2
    assert verified[0] == verified[1]


def test_invite_links_cannot_be_guessed_nor_hammered(server: Server) -> None:
    host = make_account(server, "inviter")
    with server.client(host.token) as client:
        space = client.post("/api/v1/spaces", json={"title": "Invites"}).json()
        assert client.post(f"/api/v1/spaces/{space['id']}/start").status_code == 200
        genuine = client.post(f"/api/v1/spaces/{space['id']}/invites").json()
    with server.client() as listener:
        ticket = listener.post(f"/api/v1/spaces/{space['id']}/join").json()["ticket"]
        invite = str(genuine["invite"])
        statuses = []
        for n in range(40):
            guess = invite[:-4] + f"{n:04d}"
            answer = listener.post(
                f"/api/v1/spaces/{space['id']}/invites/accept",
                json={"invite": guess, "ticket": ticket},
            )
            statuses.append(answer.status_code)
        assert 200 not in statuses
        assert set(statuses) <= {401, 429}, statuses
        # One person's guesses are throttled (a burst, then a few a second).
        assert 429 in statuses
        assert_problem(answer, 429, "rate-limited")


def test_the_data_directory_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(data)
    try:
        with running.client(running.owner_token) as admin:
            admin.post("/api/v1/users", json={"handle": unique_handle(), "password": "x" * 12})
    finally:
        running.stop()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("secret.key", "owner.token", "podium.sqlite3"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    for extra in data.glob("podium.sqlite3-*"):
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra


def test_a_database_left_readable_by_an_older_version_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "podium.sqlite3"
    _sqlite(path).close()
    path.chmod(0o644)
    _sqlite(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# Names that hold a secret or a MAC in the modules that check credentials.
SECRET_WORDS = ("mac", "tag", "digest", "signature", "csrf", "hash", "secret", "token")
# Each, and whether it checks a MAC or a token itself (accounts look tokens up by their
# hash and leave passwords to Argon2).
CHECKING_MODULES = {
    "control/tickets.py": True,
    "control/invites.py": True,
    "control/proofofwork.py": True,
    "control/credentials.py": True,
    "control/accounts.py": False,
    "web/auth.py": True,
}


def _names(node: ast.AST) -> set[str]:
    found = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            found.add(inner.id.lower())
        elif isinstance(inner, ast.Attribute):
            found.add(inner.attr.lower())
    return found


def _is_column(node: ast.AST) -> bool:
    """``table.c.name``: a SQLAlchemy column."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "c"
    )


@pytest.mark.parametrize("module", sorted(CHECKING_MODULES))
def test_secrets_are_compared_in_constant_time(module: str) -> None:
    """No ``==`` or ``!=`` between values named like secrets where credentials are
    checked: those compare with ``hmac.compare_digest``, whose time does not say how much
    of a guess was right."""
    source = Path(podium.__file__).parent / module
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            operands = [node.left, *node.comparators]
            # Comparing a length, a count or a constant tells nothing of a secret; a table
            # column (``table.c.name == value``) builds a WHERE clause, not a comparison
            # made here: the database looks a row up by its key.
            if (
                any(isinstance(o, ast.Constant) for o in operands)
                or any(
                    isinstance(o, ast.Call) and getattr(o.func, "id", "") == "len" for o in operands
                )
                or any(_is_column(o) for o in operands)
            ):
                continue
            named = set().union(*(_names(o) for o in operands))
            risky = [w for w in SECRET_WORDS if any(w in name for name in named)]
            assert not risky, f"{module}:{node.lineno} compares {risky} with == or !="
    if CHECKING_MODULES[module]:
        assert "hmac.compare_digest(" in source.read_text(), module
