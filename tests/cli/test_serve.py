"""``podium serve``: first start, restarts, configuration precedence and log hygiene."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

from harness import start_server


def test_first_start_creates_owner_and_private_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        token_file = data / "owner.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((data / "secret.key").stat().st_mode) == 0o600
        assert any("Created the owner account" in line for line in first.stdout_lines)
        assert any(str(token_file) in line for line in first.stdout_lines)
        token = first.owner_token
        with first.client(token) as owner:
            me = owner.get("/api/v1/me").json()
            assert me["handle"] == "owner"
            assert me["is_admin"] is True
            space_id = owner.post("/api/v1/spaces", json={"title": "kept"}).json()["id"]
    finally:
        assert first.stop() == 0
    logs = "".join(first.stdout_lines + first.stderr_lines)
    assert token not in logs
    assert token.split(".")[1] not in logs
    assert (data / "secret.key").read_text().strip() not in logs

    second = start_server(data)
    try:
        assert second.owner_token == token  # not replaced on restart
        with second.client(token) as owner:
            assert owner.get(f"/api/v1/spaces/{space_id}").json()["title"] == "kept"
    finally:
        second.stop()


def test_precedence_flag_env_file(tmp_path: Path) -> None:
    config = tmp_path / "podium.toml"
    config.write_text('public_url = "https://from-file.example"\nlog_format = "human"\n')
    running = start_server(
        tmp_path / "data",
        "--config",
        str(config),
        "--public-url",
        "https://from-flag.example",
        env={"PODIUM_PUBLIC_URL": "https://from-env.example"},
    )
    try:
        with running.client(running.owner_token) as owner:
            space = owner.post("/api/v1/spaces", json={"title": "where"}).json()
        assert space["page_url"].startswith("https://from-flag.example/s/")
    finally:
        running.stop()
    # The file set human logs and nothing overrode it.
    assert running.stderr_lines
    assert not running.stderr_lines[0].startswith("{")


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    running = start_server(tmp_path / "data")
    try:
        with running.client() as anon:
            anon.get("/livez")
    finally:
        running.stop()
    events = [json.loads(line) for line in running.stderr_lines if line.strip()]
    assert any(e["event"] == "http_request" and e["path"] == "/livez" for e in events)
    assert all({"ts", "level", "event"} <= e.keys() for e in events)


def test_bad_configuration_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess

    from harness import PODIUM

    result = subprocess.run(
        [*PODIUM, "serve", "--data", str(tmp_path / "d"), "--port", "0"],
        capture_output=True,
        text=True,
        env={"PODIUM_PORT": "x", "PATH": "/usr/bin"},
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "PODIUM_PORT" not in result.stderr or "invalid value" in result.stderr


def test_a_demo_speaker_does_not_flood_the_log_with_ice_checks(tmp_path: Path) -> None:
    running = start_server(tmp_path / "data", "--demo")
    try:
        with running.client() as anon:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                live = anon.get("/api/v1/spaces", params={"status": "live"}).json()["spaces"]
                state = anon.get(f"/api/v1/spaces/{live[0]['id']}/state").json() if live else {}
                if state.get("stage") and any(s["talking"] for s in state["stage"]):
                    break
                time.sleep(0.5)
            else:
                raise AssertionError("the demo speaker never started talking")
    finally:
        running.stop()
    # aioice reports every candidate pair check at INFO; none of that reaches our log.
    assert not [line for line in running.stderr_lines if "CandidatePair" in line]
    assert any(
        '"event": "started"' in line or '"event":"started"' in line for line in running.stderr_lines
    )
