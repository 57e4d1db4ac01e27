"""Test harness: a real ``podium serve`` process on a loopback port, and API helpers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PODIUM = [sys.executable, "-m", "podium"]
URL_LINE = re.compile(r"Podium is listening on (http://\S+)")
# What a shared test server is told: sign-in limits raised so that tests signing in do not
# throttle each other, and an exact audience count.
SHARED_SERVER_ENV = {
    "PODIUM_SIGNIN_BURST": "10000",
    "PODIUM_LOG_LEVEL": "warning",
    "PODIUM_EXACT_AUDIENCE": "true",
    # The suites sharing a server count joins, reactions and audiences: a CI machine whose
    # two cores the whole run shares makes the event loop late often enough to shed joins
    # ("overload"), which is not what they test. Shedding has its own tests, on servers
    # of their own (tests/room/test_admission_api.py).
    "PODIUM_SHED_LOOP_LAG_MS": "60000",
}


# Below this share of all cores left idle, a real-time client's stall says the machine
# had no core to spare (every process waiting on another's CPU), not that what it plays
# failed it: timed checks of stalls are made only above it.
MACHINE_IDLE_MIN = 0.05


def cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies of all cores, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; without guest time


def idle_since(before: tuple[int, int]) -> float:
    """The share of all cores' time left idle since ``before`` (from :func:`cpu_times`)."""
    idle, total = cpu_times()
    return (idle - before[0]) / max(1, total - before[1])


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[str]
    database_url: str = ""  # empty: the embedded SQLite file in data_dir
    env: dict[str, str] = field(default_factory=dict)  # the PODIUM_* settings it was given
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    pumps: list[threading.Thread] = field(default_factory=list)

    @property
    def owner_token(self) -> str:
        return (self.data_dir / "owner.token").read_text().strip()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pump in self.pumps:
            pump.join(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode


def start_server(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    wrap: Sequence[str] = (),
) -> Server:
    """Start ``podium serve`` on port 0 and wait until it says where it listens.

    ``wrap`` goes before the command (e.g. ``ip netns exec NAME``: another network)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    full_env.update(env or {})
    command = [*wrap, *PODIUM, "serve", "--data", str(data_dir), *args]
    if "--port" not in args:
        command += ["--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
    )
    server = Server(
        url="",
        data_dir=data_dir,
        process=process,
        database_url=full_env.get("PODIUM_DATABASE_URL", ""),
        env=dict(env or {}),
    )
    found = threading.Event()

    def pump_stdout() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.stdout_lines.append(line)
            match = URL_LINE.search(line)
            if match and not server.url:
                server.url = match.group(1)
            if line.startswith("API docs:"):  # the last line of the start-up banner
                found.set()
        found.set()

    def pump_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            server.stderr_lines.append(line)

    for pump in (pump_stdout, pump_stderr):
        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        server.pumps.append(thread)
    found.wait(timeout=30)
    if not server.url:
        server.stop()
        raise RuntimeError("podium serve did not start:\n" + "".join(server.stderr_lines))
    return server


def migrate(database_url: str) -> str:
    """``podium migrate`` on a database; returns what it printed."""
    done = subprocess.run(
        [*PODIUM, "migrate", "--database-url", database_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def start_shared_server(data_dir: Path, database_url: str = "") -> Server:
    """The server a suite shares, on the embedded SQLite database or, given its URL, on
    a PostgreSQL database (migrated first, as an operator would)."""
    env = dict(SHARED_SERVER_ENV)
    if database_url:
        migrate(database_url)
        env["PODIUM_DATABASE_URL"] = database_url
    return start_server(data_dir, env=env)


_counter = iter(range(1_000_000))


def unique_handle(prefix: str = "user") -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@dataclass
class Account:
    handle: str
    password: str
    token: str
    id: str


def make_account(server: Server, prefix: str = "user") -> Account:
    """Create an account as the owner and issue it a token by signing in."""
    handle = unique_handle(prefix)
    password = "correct horse battery"
    with server.client(server.owner_token) as admin:
        created = admin.post("/api/v1/users", json={"handle": handle, "password": password})
        assert created.status_code == 201, created.text
    with server.client() as anon:
        issued = anon.post(
            "/api/v1/tokens", json={"handle": handle, "password": password, "name": "test"}
        )
        assert issued.status_code == 201, issued.text
    return Account(handle, password, issued.json()["token"], created.json()["id"])


def assert_problem(
    response: httpx.Response, status: int, kind: str | None = None
) -> dict[str, object]:
    """The response is an RFC 9457 problem document with this status (and type)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert body["title"]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    if kind is not None:
        assert body["type"] == f"urn:podium:problem:{kind}", body
    return dict(body)
