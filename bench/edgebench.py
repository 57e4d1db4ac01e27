"""What the edge benchmarks share: real servers started on loopback, pinned to CPUs.

A Podium origin (``podium serve --demo``: a live space with a speaker reading on a loop),
Varnish and nginx with the configurations ``podium edge-config`` prints, Icecast 2.4 fed
by ffmpeg, and the CPU time of each from ``/proc``. Servers run on the CPUs in
``SERVER_CPUS`` and the load generator (the benchmark's own process) on the others, so
that neither steals the other's time; on a machine with one CPU nothing is pinned.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from podium.demo import SPEECH
from podium.edge import nginx, varnish

STARTUP_S = 60
BITRATE = 64_000  # Podium's program: AAC-LC, mono, 48 kHz, 64 kbit/s
_URL_LINE = re.compile(r"Podium is listening on (http://\S+)")


_CPUS = sorted(os.sched_getaffinity(0))  # before anything is pinned


def cpus() -> tuple[list[int], list[int]]:
    """(server CPUs, load generator CPUs): the first CPU for servers, the rest for the
    generator; both lists are every CPU on a one-CPU machine."""
    if len(_CPUS) < 2:
        return _CPUS, _CPUS
    return _CPUS[:1], _CPUS[1:]


def pin_generator() -> None:
    os.sched_setaffinity(0, cpus()[1])


def _taskset() -> list[str]:
    servers, _ = cpus()
    if shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", ",".join(map(str, servers))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workdir(prefix: str) -> Path:
    """A directory the servers' unprivileged workers can read."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)  # noqa: S103 - read by varnish/nobody
    return path


@dataclass
class Process:
    """A server process started here, stopped with ``stop()``."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    directory: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and all its descendants still alive."""
        return sum(cpu_of(pid) for pid in _tree(self.popen.pid))

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=20)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found = [root]
    for pid in found:
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def _spawn(command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [*_taskset(), *command], start_new_session=True, **kwargs
    )


def _wait_http(url: str, process: Process, accept: Callable[[httpx.Response], bool]) -> None:
    deadline = time.monotonic() + STARTUP_S
    while True:
        try:
            if accept(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        if process.popen.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"{process.name} did not start")
        time.sleep(0.2)


def start_origin(*args: str, settings: Mapping[str, str] | None = None) -> Process:
    """``podium serve --demo`` on a free port, with ``settings`` (``PODIUM_*`` variables);
    ``extra['space']`` is the demo space."""
    data = Path(tempfile.mkdtemp(prefix="podium-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODIUM_")}
    env["PODIUM_LOG_LEVEL"] = "warning"
    env.update(settings or {})
    command = [sys.executable, "-m", "podium", "serve", "--data", str(data / "d")]
    popen = _spawn(
        [*command, "--port", "0", "--demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert popen.stdout is not None
    url = ""
    deadline = time.monotonic() + STARTUP_S
    while not url and time.monotonic() < deadline:
        line = popen.stdout.readline().decode()
        if not line:
            break
        if match := _URL_LINE.search(line):
            url = match.group(1)
    # Keep reading what it prints, so that a full pipe never blocks it, and drop it: a
    # read() to the end would keep every log line, copying the growing buffer, on this
    # process's CPU, which the benchmarks measure.
    assert isinstance(popen.stdout, io.BufferedReader)
    threading.Thread(target=_drain, args=(popen.stdout,), daemon=True).start()
    origin = Process("podium", url, popen, data)
    if not url:
        origin.stop()
        raise RuntimeError("podium serve did not start")
    token = (data / "d" / "owner.token").read_text().strip()
    spaces = httpx.get(
        f"{url}/api/v1/spaces", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()["spaces"]
    origin.extra["space"] = next(s["id"] for s in spaces if s["status"] == "live")
    origin.extra["token"] = token
    _wait_http(
        f"{url}/hls/{origin.extra['space']}/live.m3u8",
        origin,
        lambda r: r.status_code == 200 and "#EXT-X-PART:" in r.text,
    )
    return origin


def _drain(stream: io.BufferedReader) -> None:
    while stream.read1(1 << 16):
        pass


def start_varnish(upstream: str, port: int | None = None) -> Process:
    directory = workdir("podium-bench-varnish-")
    vcl = directory / "podium.vcl"
    vcl.write_text(varnish.render(upstream))
    os.chmod(vcl, 0o644)
    port = port or free_port()
    command = ["varnishd", "-F", "-a", f"127.0.0.1:{port}", "-f", str(vcl)]
    command += ["-n", str(directory / "n"), "-s", "malloc,256m"]
    edge = Process("varnish", f"http://127.0.0.1:{port}", _quiet(command), directory)
    _wait_http(f"{edge.url}/livez", edge, lambda r: r.status_code == 200)
    return edge


def start_nginx(upstream: str) -> Process:
    directory = workdir("podium-bench-nginx-")
    port = free_port()
    site = nginx.render(upstream, listen=f"127.0.0.1:{port}", cache_dir=directory / "cache")
    (directory / "podium.conf").write_text(site)
    main = directory / "nginx.conf"
    main.write_text(nginx.standalone(directory, directory / "podium.conf"))
    command = ["nginx", "-p", str(directory), "-c", str(main)]
    subprocess.run([*command, "-t"], check=True, capture_output=True, timeout=60)
    edge = Process("nginx", f"http://127.0.0.1:{port}", _quiet(command), directory)
    _wait_http(f"{edge.url}/livez", edge, lambda r: r.status_code == 200)
    return edge


ICECAST_XML = """<icecast>
  <limits><clients>20000</clients><sources>2</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-on-connect>1</burst-on-connect>
    <burst-size>65535</burst-size></limits>
  <authentication><source-password>{password}</source-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password></authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>0</fileserve>
  <paths><basedir>/usr/share/icecast2</basedir><logdir>{directory}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>-</accesslog><errorlog>error.log</errorlog><loglevel>1</loglevel>
  </logging>
  <security><chroot>0</chroot>
    <changeowner><user>nobody</user><group>nogroup</group></changeowner></security>
</icecast>
"""


@contextmanager
def icecast_with_source(bitrate: int = BITRATE) -> Iterator[tuple[Process, Process]]:
    """Icecast 2.4 with one mount, ``/live.aac``, fed by ffmpeg: the demo's speech on a
    loop, encoded to AAC-LC mono 48 kHz at ``bitrate`` in real time (ADTS)."""
    directory = workdir("podium-bench-icecast-")
    os.chown(directory, *_nobody())
    port = free_port()
    password = "bench-" + os.urandom(6).hex()
    config = directory / "icecast.xml"
    config.write_text(ICECAST_XML.format(port=port, password=password, directory=directory))
    os.chmod(config, 0o644)
    server = Process(
        "icecast2",
        f"http://127.0.0.1:{port}",
        _quiet(["icecast2", "-c", str(config)]),
        directory,
    )
    _wait_http(f"{server.url}/status-json.xsl", server, lambda r: r.status_code == 200)
    source = Process(
        "ffmpeg",
        "",
        _quiet(
            [
                *("ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1"),
                *("-i", str(SPEECH[0]), "-c:a", "aac", "-b:a", str(bitrate), "-ac", "1"),
                *("-ar", "48000", "-f", "adts", "-content_type", "audio/aac"),
                f"icecast://source:{password}@127.0.0.1:{port}/live.aac",
            ]
        ),
    )
    try:
        _wait_http(f"{server.url}/status-json.xsl", server, _mounted)
        yield server, source
    finally:
        source.stop()
        server.stop()


def _mounted(response: httpx.Response) -> bool:
    """Icecast's status lists the source once ffmpeg is connected."""
    return response.status_code == 200 and "/live.aac" in response.text


def _nobody() -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid


def _quiet(command: list[str]) -> subprocess.Popen[bytes]:
    return _spawn(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def origin_requests(origin: Process, route: str) -> float:
    metrics = httpx.get(f"{origin.url}/metrics", timeout=10).text
    label = f'method="GET",route="{route}",'
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("podium_http_requests_total{") and label in line
    )


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {}
    for name, command in (
        ("varnish", ["varnishd", "-V"]),
        ("nginx", ["nginx", "-v"]),
        ("icecast", ["icecast2", "-v"]),
    ):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
            versions[name] = (done.stdout + done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[name] = "absent"
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "server_cpus": cpus()[0],
        "generator_cpus": cpus()[1],
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        **versions,
    }


def write_json(path: Path | None, document: dict[str, object]) -> None:
    if path is not None:
        path.write_text(json.dumps(document, indent=2, default=str))
