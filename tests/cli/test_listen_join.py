"""``podium listen --space``: a listener who joins the way the page does, through the
waiting room and a proof of work, then hears the space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from harness import PODIUM, start_server
from podium.control import proofofwork


def test_listen_waits_its_turn_solves_the_work_and_hears_the_space(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data",
        "--demo",
        "--max-join-rate",
        "0.5",
        "--join-pow",
        "on",
        env={"PODIUM_POW_DIFFICULTY": "8", "PODIUM_LOG_LEVEL": "warning"},
    )
    try:
        live = httpx.get(f"{server.url}/api/v1/spaces", params={"status": "live"}).json()
        space_id = live["spaces"][0]["id"]
        join = f"{server.url}/api/v1/spaces/{space_id}/join"
        # Someone else takes the one admission the rate allows right now.
        challenge = httpx.post(join).json()["challenge"]
        proof = {"token": challenge["token"], "nonce": proofofwork.solve(challenge["token"], 8)}
        assert httpx.post(join, json={"pow": proof}).status_code == 200

        env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
        command = [*PODIUM, "listen", "--space", space_id, "--server", server.url]
        done = subprocess.run(
            [*command, "--seconds", "3", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "solving a proof of work (8 bits)" in done.stderr
        assert "in the queue: position 1 of 1" in done.stderr
        report = json.loads(done.stdout)
        assert report["join"]["proofs_solved"] == 1
        assert report["join"]["queued_answers"] >= 1
        assert report["join"]["admitted"]["status"] == "admitted"
        assert report["parts"] > 0
        assert report["seconds"] > 2
    finally:
        server.stop()


def test_listen_needs_a_playlist_or_a_space() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "podium", "listen"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "--space" in done.stderr
