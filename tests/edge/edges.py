"""Real edge caches for the tests: varnishd and nginx with the configurations Podium
generates, each started in the foreground with its own working directory and port.

Their files live in 0755 directories under /tmp, not pytest's tmp_path: Varnish's
compiler and workers and nginx's workers run as unprivileged users and must read them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from harness import Server
from podium.edge import nginx, varnish

STARTUP_S = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_workdir(prefix: str) -> Path:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(workdir, 0o755)  # noqa: S103 - the edges' workers run as other users
    return workdir


@dataclass
class Edge:
    """A running edge. ``kill()`` is a crash (SIGKILL to all its processes)."""

    kind: str
    url: str
    port: int
    upstream: str
    process: subprocess.Popen[bytes]
    workdir: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        """The edge's processes: the one started and its descendants (workers)."""
        parents: dict[int, int] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
        found = [self.process.pid]
        for pid in found:
            found += [child for child, parent in parents.items() if parent == pid]
        return found


def start_varnish(upstream: str, port: int | None = None, memory: str = "64m") -> Edge:
    """varnishd in the foreground with ``podium edge-config varnish`` for ``upstream``."""
    workdir = make_workdir("podium-varnish-")
    vcl = workdir / "podium.vcl"
    vcl.write_text(varnish.render(upstream))
    os.chmod(vcl, 0o644)
    port = port or free_port()
    command = ["varnishd", "-F", "-a", f"127.0.0.1:{port}", "-f", str(vcl)]
    command += ["-n", str(workdir / "n"), "-s", f"malloc,{memory}"]
    return _started("varnish", command, port, upstream, workdir)


def start_nginx(upstream: str, port: int | None = None) -> Edge:
    """nginx in the foreground (one worker) with ``podium edge-config nginx`` for
    ``upstream`` in a minimal main configuration of its own (pid, logs, temp paths),
    checked with ``nginx -t`` first."""
    workdir = make_workdir("podium-nginx-")
    port = port or free_port()
    site = nginx.render(upstream, listen=f"127.0.0.1:{port}", cache_dir=workdir / "cache")
    command = nginx_command(workdir, site)
    return _started("nginx", command, port, upstream, workdir)


def nginx_command(workdir: Path, site: str) -> list[str]:
    """The nginx command line for ``site`` (an http-context configuration) with a main
    configuration in ``workdir``, after ``nginx -t`` accepted it."""
    (workdir / "podium.conf").write_text(site)
    main = workdir / "nginx.conf"
    main.write_text(nginx.standalone(workdir, workdir / "podium.conf"))
    command = ["nginx", "-p", str(workdir), "-c", str(main)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    return command


def _started(kind: str, command: list[str], port: int, upstream: str, workdir: Path) -> Edge:
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: kill() reaches its workers
    )
    edge = Edge(kind, f"http://127.0.0.1:{port}", port, upstream, process, workdir)
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            if httpx.get(f"{edge.url}/livez", timeout=2).status_code == 200:
                return edge
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            edge.stop()
            raise RuntimeError(f"{kind} did not start: {' '.join(command)}")
        time.sleep(0.2)


def origin_requests(origin: Server, route: str, method: str = "GET") -> float:
    """Requests with ``method`` the origin has answered on ``route`` (its Prometheus
    counter)."""
    metrics = httpx.get(f"{origin.url}/metrics", timeout=10).text
    label = f'method="{method}",route="{route}",'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("podium_http_requests_total{") and label in line
    )


PARTS_ROUTE = "/hls/{space_id}/{name}"
PLAYLIST_ROUTE = "/hls/{space_id}/live.m3u8"


def live_space(origin: Server, title: str = "Crowd") -> dict[str, str]:
    with origin.client(origin.owner_token) as client:
        space = client.post("/api/v1/spaces", json={"title": title}).json()
        client.post(f"/api/v1/spaces/{space['id']}/start")
    return dict(space)


def end_space(origin: Server, space: dict[str, str]) -> None:
    with origin.client(origin.owner_token) as client:
        client.post(f"/api/v1/spaces/{space['id']}/end")


def live_hint(playlist_url: str) -> tuple[int, int]:
    """(msn, part index) of the part the live playlist's preload hint announces."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        text = httpx.get(playlist_url, timeout=10).text
        hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part-(\d+)-(\d+)\.m4s"', text)
        if hint:
            return int(hint[1]), int(hint[2])
        assert time.monotonic() < deadline, "the live playlist has no preload hint"
        time.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
