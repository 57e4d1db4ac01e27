"""The ``podium`` command as a newcomer uses it, against a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from harness import PODIUM, Server, make_account, start_server, unique_handle


def podium(
    *args: str, stdin: str = "", env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    full_env.update(env or {})
    return subprocess.run(
        [*PODIUM, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=60,
    )


def test_space_lifecycle_from_the_cli(server: Server, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(make_account(server).token + "\n")
    common = ["--server", server.url, "--token-file", str(token_file)]
    created = podium("space", "create", *common, "--title", "CLI talk", "--json")
    assert created.returncode == 0, created.stderr
    space = json.loads(created.stdout)
    assert space["page_url"] == f"{server.url}/s/{space['id']}"
    assert space["status"] == "scheduled"

    started = podium("space", "start", space["id"], *common)
    assert started.returncode == 0, started.stderr
    assert "live" in started.stdout
    listed = podium("space", "list", "--status", "live", *common, "--json")
    assert space["id"] in [s["id"] for s in json.loads(listed.stdout)]
    ended = podium("space", "end", space["id"], *common, "--json")
    assert json.loads(ended.stdout)["status"] == "ended"
    again = podium("space", "end", space["id"], *common)
    assert again.returncode == 1
    assert "cannot end this space" in again.stderr
    assert "Traceback" not in again.stderr


def test_scheduled_create_and_bad_time(server: Server, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(make_account(server).token)
    common = ["--server", server.url, "--token-file", str(token_file)]
    ok = podium(
        "space",
        "create",
        *common,
        "--title",
        "Later",
        "--scheduled-start",
        "2099-05-01T18:00:00Z",
        "--json",
    )
    assert json.loads(ok.stdout)["scheduled_start"] == "2099-05-01T18:00:00.000Z"
    bad = podium("space", "create", *common, "--title", "Later", "--scheduled-start", "soon")
    assert bad.returncode == 2
    assert "not an RFC 3339 time" in bad.stderr


def test_user_add_and_token_create(server: Server, tmp_path: Path) -> None:
    owner_file = tmp_path / "owner"
    owner_file.write_text(server.owner_token)
    handle = unique_handle("cli")
    added = podium(
        "user",
        "add",
        handle,
        "--display-name",
        "Cli Person",
        "--password-stdin",
        "--server",
        server.url,
        "--token-file",
        str(owner_file),
        "--json",
        stdin="a good long password\n",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["handle"] == handle

    out = tmp_path / "mine.token"
    issued = podium(
        "token",
        "create",
        "--handle",
        handle,
        "--password-stdin",
        "--out",
        str(out),
        "--server",
        server.url,
        stdin="a good long password\n",
    )
    assert issued.returncode == 0, issued.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    me = podium("user", "me", "--server", server.url, "--token-file", str(out), "--json")
    assert json.loads(me.stdout)["display_name"] == "Cli Person"

    tokens = podium("token", "list", "--server", server.url, "--token-file", str(out), "--json")
    token_id = json.loads(tokens.stdout)[0]["id"]
    revoked = podium("token", "revoke", token_id, "--server", server.url, "--token-file", str(out))
    assert revoked.returncode == 0
    dead = podium("user", "me", "--server", server.url, "--token-file", str(out))
    assert dead.returncode == 1
    assert "revoked" in dead.stderr


def test_token_from_environment(server: Server) -> None:
    account = make_account(server)
    me = podium("user", "me", "--server", server.url, "--json", env={"PODIUM_TOKEN": account.token})
    assert json.loads(me.stdout)["handle"] == account.handle


def test_clear_errors_without_tracebacks(server: Server, tmp_path: Path) -> None:
    missing = podium(
        "space",
        "create",
        "--server",
        server.url,
        "--title",
        "x",
        "--token-file",
        str(tmp_path / "nope"),
    )
    assert missing.returncode == 1
    assert "cannot read the token file" in missing.stderr
    bad = tmp_path / "bad"
    bad.write_text("pdm_aaaaaaaaaaaa." + "b" * 43)
    refused = podium(
        "space", "create", "--server", server.url, "--title", "x", "--token-file", str(bad)
    )
    assert refused.returncode == 1
    assert "invalid API token" in refused.stderr
    unreachable = podium("space", "list", "--server", "http://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert "cannot reach Podium" in unreachable.stderr
    for result in (missing, refused, unreachable):
        assert "Traceback" not in result.stderr
    usage = podium("space", "frobnicate")
    assert usage.returncode == 2


def test_defaults_find_a_local_server_and_its_owner_token(tmp_path: Path) -> None:
    """In the directory where ``podium serve`` ran, the CLI needs no flags at all."""
    running = start_server(Path("podium-data"), "--port", "0", cwd=tmp_path)
    try:
        created = podium(
            "space",
            "create",
            "--title",
            "Zero config",
            "--json",
            env={"PODIUM_SERVER": running.url},
            cwd=tmp_path,
        )
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["host"]["handle"] == "owner"
    finally:
        running.stop()


def test_a_default_token_from_another_server_never_decides(server: Server, tmp_path: Path) -> None:
    """Where the README's first command ran, ``podium-data/owner.token`` holds another
    server's token: a password sign-in is never replaced by it, a request that needs no
    token is not refused because of it, and one that needs a token says where it came from.
    """
    (tmp_path / "podium-data").mkdir()
    (tmp_path / "podium-data" / "owner.token").write_text("pdm_aaaaaaaaaaaa." + "b" * 43)
    handle = make_account(server, "signin").handle
    with server.client(server.owner_token) as admin:
        admin.post("/api/v1/users", json={"handle": handle + "x", "password": "another password"})
    common = ["--server", server.url]
    mine = tmp_path / "mine.token"
    issued = podium(
        "token",
        "create",
        "--handle",
        handle + "x",
        "--password-stdin",
        "--out",
        str(mine),
        *common,
        stdin="another password\n",
        cwd=tmp_path,
    )
    assert issued.returncode == 0, issued.stderr
    me = podium("user", "me", *common, "--token-file", str(mine), "--json", cwd=tmp_path)
    assert me.returncode == 0, me.stderr
    assert json.loads(me.stdout)["handle"] == handle + "x"

    listed = podium("space", "list", *common, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)

    refused = podium("space", "create", *common, "--title", "x", cwd=tmp_path)
    assert refused.returncode == 1
    assert "invalid API token" in refused.stderr
    assert "default token file podium-data/owner.token" in refused.stderr
    assert "--token-file" in refused.stderr
    assert "Traceback" not in refused.stderr

    # A token the user named is theirs: its refusal is the answer, with no retry.
    named = podium(
        "user",
        "me",
        *common,
        "--token-file",
        str(tmp_path / "podium-data" / "owner.token"),
        cwd=tmp_path,
    )
    assert named.returncode == 1
    assert "invalid API token" in named.stderr
    assert "default token file" not in named.stderr
    flag_beats_env = podium(
        "user",
        "me",
        *common,
        "--token-file",
        str(mine),
        env={"PODIUM_TOKEN": "pdm_aaaaaaaaaaaa." + "b" * 43},
        cwd=tmp_path,
    )
    assert flag_beats_env.returncode == 0, flag_beats_env.stderr


def test_without_any_token_the_cli_says_how_to_give_one(server: Server, tmp_path: Path) -> None:
    missing = podium("space", "create", "--server", server.url, "--title", "x", cwd=tmp_path)
    assert missing.returncode == 1
    assert "no API token" in missing.stderr
    assert "--token-file" in missing.stderr
    anonymous = podium("space", "list", "--server", server.url, cwd=tmp_path)
    assert anonymous.returncode == 0, anonymous.stderr


def test_python_dash_m_and_version() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "podium", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("podium ")


def test_room_commands(server: Server, tmp_path: Path) -> None:
    host = make_account(server, "host")
    token_file = tmp_path / "token"
    token_file.write_text(host.token)
    common = ["--server", server.url, "--token-file", str(token_file)]
    space = json.loads(podium("space", "create", *common, "--title", "CLI room", "--json").stdout)
    assert space["state_url"].endswith(f"/api/v1/spaces/{space['id']}/state")
    podium("space", "start", space["id"], *common)
    joined = json.loads(podium("room", "join", space["id"], *common, "--json").stdout)
    with server.client() as anon:
        anon.post(
            f"/api/v1/spaces/{space['id']}/hand", json={"ticket": joined["ticket"], "name": "Guest"}
        )
    hands = podium("room", "hands", space["id"], *common)
    assert "1. Guest" in hands.stdout
    approved = podium("room", "approve", space["id"], joined["listener_id"], *common)
    assert approved.returncode == 0, approved.stderr
    state = podium("room", "state", space["id"], *common)
    assert "Guest (speaker)" in state.stdout
    invite = podium("room", "invite", space["id"], *common)
    assert "?invite=" in invite.stdout
    audit = podium("room", "audit", space["id"], *common)
    assert "approve" in audit.stdout
    refused = podium("room", "remove", space["id"], f"u:{host.id}", *common)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    podium("space", "end", space["id"], *common)
    analytics = podium("room", "analytics", space["id"], *common, "--json")
    assert json.loads(analytics.stdout)["unique"] == 1
