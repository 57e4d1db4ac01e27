"""Throwaway instances of the real servers a fleet runs on, started by the tests.

Each is Debian's own binary (``scripts/install --test`` installs the packages), in a
temporary directory, on a free loopback port; nothing assumes a service already running.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited in 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (scripts/install --test installs it)")
    return Path(found[-1]).parent


def _version(path: str) -> int:
    return int(Path(path).parts[-3])


class Postgres:
    """A PostgreSQL cluster of its own: ``initdb`` in a temporary directory, ``pg_ctl``
    to start and stop it (the data survives a stop), one database per caller.

    PostgreSQL will not run as root; as root it runs as the ``postgres`` user that
    Debian's package creates.
    """

    USER = "podium"

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="podium-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._databases = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}{log}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options)

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are cut); its data stays."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")

    def url(self, database: str) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "podium") -> str:
        """A new, empty database; returns its URL."""
        self._databases += 1
        name = f"{prefix}_{self._databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a name of our own making
        return self.url(name)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=1):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A Redis of its own: Debian's ``redis-server`` on a free loopback port, nothing
    saved to disk. :meth:`kill` is SIGKILL; :meth:`start` brings it back, empty, on the
    same port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="podium-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)


class HAProxy:
    """Debian's ``haproxy`` with the configuration ``podium lb-config haproxy`` prints for
    ``nodes``, on a free loopback port, in the foreground (``-db``)."""

    def __init__(self, nodes: list[str], port: int | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="podium-haproxy-"))
        self.port = port or free_port()
        self.socket = self.root / "admin.sock"
        config = subprocess.run(
            [
                sys.executable,
                "-m",
                "podium",
                "lb-config",
                "haproxy",
                *(arg for node in nodes for arg in ("--node", node)),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--admin-socket",
                str(self.socket),
                "--maxconn",
                "4000",  # within this machine's file descriptor limit
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.config = self.root / "haproxy.cfg"
        self.config.write_text(config)
        self.log = self.root / "haproxy.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError(f"haproxy did not start:\n{self.errors}") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def errors(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def command(self, line: str) -> str:
        """One command on the runtime API (e.g. ``show servers state``)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def close(self) -> None:
        terminate(self.process)
        shutil.rmtree(self.root, ignore_errors=True)
