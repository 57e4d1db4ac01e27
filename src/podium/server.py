"""The composition root: ``podium serve`` builds every part here and wires them together.

It prepares the data directory (database, signing key, the owner's API token on first
start), builds the control plane and the web shell around one :class:`Context`, and runs
the HTTP server until it is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from podium import clock
from podium.clients.speak import WavSource, speak
from podium.config import Secret, Settings
from podium.control.accounts import Accounts, User
from podium.control.db import Database, database_url
from podium.control.fleet import HEARTBEAT_S, Fleet, RateLimiter, SharedBuckets
from podium.control.lifecycle import Action, SpaceStatus
from podium.control.placement import LEASE_S, RENEW_S, Leases, holder
from podium.control.ratelimit import TokenBuckets
from podium.control.rooms import Rooms
from podium.control.spaces import Spaces
from podium.demo import SPEECH
from podium.errors import ConfigError, PodiumError, StorageError
from podium.media.link import MediaLink
from podium.media.replica import Replicas
from podium.origin.origin import Origin
from podium.origin.routes import Upstream
from podium.web import archive, handover, internal, replicas
from podium.web.admission import Gate
from podium.web.app import create_app
from podium.web.context import Context, signing_key
from podium.web.fleet import node_load
from podium.web.mediapool import MediaPool
from podium.web.metrics import Metrics
from podium.web.protocol import with_head_timeout
from podium.web.roomstate import RoomHub, person_of_user
from podium.web.takeover import Takeover

log = logging.getLogger("podium.server")

OWNER_HANDLE = "owner"
OWNER_TOKEN_FILE = "owner.token"  # noqa: S105 (a file name)
SECRET_KEY_FILE = "secret.key"  # noqa: S105 (a file name)
# Largest request head (request line and headers) accepted before the connection is cut.
MAX_HEAD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Started:
    listen_url: str
    url: str
    owner_token_file: Path
    owner_created: bool
    demo_page: str | None = None


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def prepare_data_dir(settings: Settings) -> Settings:
    """Create the data directory and the signing key; return settings with the key set."""
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if settings.secret_key is not None:
            return settings
        key_file = settings.data_dir / SECRET_KEY_FILE
        if not key_file.exists():
            _write_private(key_file, secrets.token_urlsafe(48))
        key = key_file.read_text().strip()
    except OSError as exc:
        raise StorageError(f"cannot use data directory {settings.data_dir}: {exc}") from exc
    if len(key) < 32:
        raise ConfigError(f"{key_file} holds a key shorter than 32 characters")
    return replace(settings, secret_key=Secret(key))


def ensure_owner(accounts: Accounts, data_dir: Path) -> bool:
    """On first start, create the owner account and write its API token (mode 0600).

    Returns whether the owner was created now.
    """
    if accounts.count_users() > 0:
        return False
    now = clock.now()
    owner = accounts.create_user(OWNER_HANDLE, "Owner", None, now, is_admin=True)
    _, token = accounts.issue_token(owner.id, "owner (first start)", now)
    token_file = data_dir / OWNER_TOKEN_FILE
    try:
        token_file.unlink(missing_ok=True)
        _write_private(token_file, token + "\n")
    except OSError as exc:
        raise StorageError(f"cannot write {token_file}: {exc}") from exc
    return True


def open_database(settings: Settings) -> Database:
    """The control plane's database, at the schema this Podium runs on.

    The embedded SQLite file is upgraded here, so a newcomer never runs a migration; a
    shared PostgreSQL is upgraded by ``podium migrate`` (once, as a step of a deploy), and
    a node refuses to start on one at another revision.
    """
    db = Database(database_url(settings.database_url, settings.data_dir))
    try:
        if db.dialect == "sqlite":
            db.upgrade()
        else:
            db.require_current()
    except BaseException:
        db.close()
        raise
    return db


def build(settings: Settings) -> tuple[FastAPI, Context, bool]:
    """Build the application for ``settings``; return it, its context and whether the
    owner account was created just now."""
    settings = prepare_data_dir(settings)
    db = open_database(settings)
    accounts = Accounts(db)
    owner_created = ensure_owner(accounts, settings.data_dir)
    per_second = settings.signin_per_minute / 60
    node_name = settings.node_name or f"{socket.gethostname()}:{settings.port}"
    # With a shared database, which node runs which room is written down.
    media_node = None if db.dialect == "sqlite" else node_name
    fleet = (
        Fleet(
            settings.redis_url,
            node_name,
            settings.role,
            settings.fleet_url,
            clock.now(),
        )
        if settings.redis_url
        else None
    )

    def limit(name: str, rate: float, burst: float) -> RateLimiter:
        """One bucket per key for the whole fleet, or for this node on its own."""
        if fleet is None:
            return TokenBuckets(rate, burst)
        return SharedBuckets(fleet, name, rate, burst)

    spaces = Spaces(db)
    recordings = settings.data_dir / "recordings"
    # A web node serves ended programs from its own copies of them (podium.media.replica).
    origin = (
        Origin(settings.data_dir / replicas.REPLICAS_DIR, live_from_disk=False)
        if settings.role == "web"
        else Origin(recordings)
    )
    # A Unix socket path must be short (108 bytes), so it lives in its own temporary
    # directory rather than under a data directory of any length.
    runtime_dir = Path(tempfile.mkdtemp(prefix="podium-"))
    media: MediaLink
    # A media node holds a lease on each space it runs, so that no other speaks for it.
    leases = Leases(fleet, node_name) if fleet is not None and settings.role == "media" else None
    if fleet is not None and leases is not None:
        # Started (again, after an upgrade): this node takes spaces, whatever a drain said.
        fleet.undrain(node_name)
    pool: MediaPool | None = None
    if settings.role == "web":
        # load_settings checks that a web node has both.
        assert settings.media_secret is not None
        assert fleet is not None
        pool = MediaPool(
            fleet,
            settings.media_secret.value,
            origin,
            runtime_dir,
            spaces,
            settings.media_url,
            Replicas(origin.recordings),
        )
        media = pool
    else:

        def resumable() -> list[str]:
            """The live spaces this node ran, less any another node has taken since."""
            mine = spaces.live_ids(media_node)
            if fleet is None or leases is None:
                return mine
            return [
                s for s in mine if (lease := holder(fleet, s)) is None or lease.node == node_name
            ]

        media = MediaLink(
            runtime_dir,
            recordings,
            origin,
            live_spaces=resumable,
            log_format=settings.log_format,
            log_level=settings.log_level,
            exported=lambda space_id: archive.replay_written(context, space_id),
            public_address=settings.public_address,
        )
        media.node = media_node
    context = Context(
        settings=settings,
        db=db,
        accounts=accounts,
        spaces=spaces,
        metrics=Metrics(),
        signin_by_client=limit("signin-address", per_second, settings.signin_burst),
        signin_by_handle=limit("signin-handle", per_second, settings.signin_burst),
        signup_by_client=limit("signup-address", 10 / 3600, 10),
        origin=origin,
        media=media,
        rooms=Rooms(db),
        fleet=fleet,
        media_node=media_node,
        leases=leases,
    )
    context.hub = RoomHub(context, exact_audience=settings.exact_audience)
    previous = settings.previous_secret_key
    context.gate = Gate(
        settings, signing_key(context), fleet, previous.value.encode() if previous else None
    )
    context.join_by_client = limit("join-address", settings.join_per_second, settings.join_burst)
    context.writes_by_client = limit(
        "writes-address", settings.listener_writes_per_second, settings.listener_writes_burst
    )
    app = create_app(context)
    if pool is not None:
        app.state.upstream = Upstream(pool.url_for)
        app.include_router(replicas.router)
    elif settings.role == "media":
        # Before the internal API's catch-all: a handover is this node's, not the worker's.
        app.include_router(handover.router)
        app.include_router(internal.router)
        app.include_router(replicas.router)
    return app, context, owner_created


async def _media_status(context: Context) -> dict[str, Any] | None:
    """What this node's media worker says of itself, or None if it cannot say."""
    try:
        status: dict[str, Any] = await asyncio.wait_for(context.media.status(), HEARTBEAT_S)
    except (PodiumError, TimeoutError):
        return None
    return status


async def _media_rooms(context: Context) -> list[str] | None:
    """The spaces whose rooms this node's media worker runs, or None if it cannot say."""
    status = await _media_status(context)
    return None if status is None else sorted(status.get("rooms", {}))


def media_cores(settings: Settings) -> float:
    """The cores a media node offers to rooms: its setting, else those it may run on."""
    return settings.media_cores or float(len(os.sched_getaffinity(0)))


async def heartbeat(context: Context) -> None:
    """Keep this node in the fleet's registry, with its load, for as long as it runs.

    A node that runs rooms also says how many speakers they have, the cores it offers
    and the cores its worker used since the last beat: what placement weighs."""
    assert context.fleet is not None
    last: tuple[float, float] | None = None  # (monotonic time, worker CPU seconds)
    while True:
        load = node_load(context)
        if isinstance(context.media, MediaPool):  # the media nodes whose feeds it follows
            load["follows"] = context.media.followed()
        else:  # a web node's rooms are the media nodes'
            status = await _media_status(context)
            rooms = status.get("rooms", {}) if status is not None else None
            load["media_rooms"] = None if rooms is None else sorted(rooms)
            load["speakers"] = sum(len(room.get("speakers", [])) for room in (rooms or {}).values())
            load["cores"] = media_cores(context.settings)
            if status is not None and "cpu_s" in status:
                now = (time.monotonic(), float(status["cpu_s"]))
                if last is not None and now[0] > last[0] and now[1] >= last[1]:
                    load["worker_cpu"] = round((now[1] - last[1]) / (now[0] - last[0]), 3)
                last = now
        context.fleet.heartbeat(clock.now(), load)
        await asyncio.sleep(HEARTBEAT_S)


async def keep_leases(context: Context) -> None:
    """Renew this media node's lease on every space it runs; stop a room whose lease
    another node holds now.

    While Redis cannot be reached, nobody can take a lease, so rooms carry on, unless no
    web node follows this node either for longer than a lease lasts: then this node is
    the one cut off (a partition), the others may have taken its spaces, and it stops
    writing them. They resume here, from the recording, if their lease is free when it
    can reach Redis again (as does any live space recorded as this node's that it does
    not run). Each round it also takes over the spaces of nodes that stopped
    (:mod:`podium.web.takeover`), and, while an operator drains it, hands its own over
    (:mod:`podium.web.handover`).
    """
    leases = context.leases
    assert leases is not None
    takeover = Takeover(context, leases)
    drainer = handover.Drainer(context, leases)
    renewed = time.monotonic()
    while True:
        await asyncio.sleep(RENEW_S)
        rooms = await _media_rooms(context)
        if rooms is None:
            continue
        held = leases.hold_all(rooms)
        now = time.monotonic()
        if held is None:
            alone = context.media.fanout.followers == 0
            if alone and rooms and now - renewed > LEASE_S:
                log.error("leases_lost_cut_off", extra={"fields": {"rooms": rooms}})
                for space_id in rooms:
                    with contextlib.suppress(PodiumError):
                        await context.media.abandon_room(space_id)
            continue
        renewed = now
        for lease in held:
            if not lease.mine:
                log.error(
                    "lease_taken_room_stopped",
                    extra={"fields": {"space_id": lease.space_id, "holder": lease.node}},
                )
                with contextlib.suppress(PodiumError):
                    await context.media.abandon_room(lease.space_id)
        await _take_back(context, leases, rooms + sorted(drainer.moving))
        await takeover.check(rooms)
        drainer.check(rooms)


async def _take_back(context: Context, leases: Leases, running: list[str]) -> None:
    """Start again the rooms of live spaces recorded as this node's that it does not run
    (stopped while it was cut off), where no other node holds their lease."""
    try:
        mine = context.spaces.live_ids(context.media_node)
    except StorageError:
        return
    missing = set(mine) - set(running) - context.arriving
    if missing:  # the rooms were listed earlier this round: one may have started since
        now_running = await _media_rooms(context)
        if now_running is None:
            return
        missing -= set(now_running)
    for space_id in sorted(missing - context.arriving):
        lease = leases.hold(space_id)
        if lease is None or not lease.mine:
            continue
        log.warning("room_taken_back", extra={"fields": {"space_id": space_id}})
        try:
            await context.media.start_room(space_id)
        except PodiumError as exc:
            leases.release(space_id)
            log.error("room_take_back_failed", extra={"fields": {"error": exc.detail}})


async def end_rooms_ended_elsewhere(context: Context) -> None:
    """With nodes sharing the database, a space this node runs may be ended through
    another: end its room here too, so that its program ends and nothing records on."""
    while True:
        await asyncio.sleep(HEARTBEAT_S)
        rooms = await _media_rooms(context)
        try:
            ended = context.spaces.not_live(rooms or [])
        except StorageError:
            continue  # the database is away; the next round asks again
        for space_id in ended:
            log.info("room_ended_elsewhere", extra={"fields": {"space": space_id}})
            with contextlib.suppress(PodiumError):
                await context.media.end_room(space_id)


DEMO_TITLE = "Podium demo"
DEMO_TOKEN_NAME = "demo speaker"  # noqa: S105 (the label of a token)


def _owner(context: Context) -> User:
    owner = context.accounts.find_by_handle(OWNER_HANDLE)
    if owner is None:
        raise ConfigError("the owner account is missing; the demo space needs it")
    return owner


async def start_demo_space(context: Context) -> str:
    """The demo space: the owner's live one from an earlier run, or a new one taken live."""
    owner = _owner(context)
    for space in context.spaces.recent(SpaceStatus.LIVE, 200):
        if space.host_id == owner.id and space.title == DEMO_TITLE:
            return space.id
    space = context.spaces.create(
        owner.id,
        DEMO_TITLE,
        "A speaker reading a short text, on a loop: what a live space sounds like.",
        None,
        clock.now(),
    )
    context.rooms.ensure(space.id, person_of_user(owner.id), owner.display_name)
    node = await context.media.start_room(space.id)
    context.spaces.claim_media(space.id, node)
    context.spaces.transition(space.id, Action.START, owner.id, clock.now())
    return space.id


async def run_demo_speaker(context: Context, server_url: str, space_id: str) -> None:
    """Speak a bundled recording into the demo space over WHIP, for as long as we run.

    It is an ordinary WHIP client talking to this server over loopback; if the session
    drops (the media worker restarted, say), it publishes again.
    """
    owner = _owner(context)
    now = clock.now()
    for old in context.accounts.list_tokens(owner.id):  # one demo token, not one per start
        if old.name == DEMO_TOKEN_NAME and old.revoked_at is None:
            context.accounts.revoke_token(owner.id, old.id, now)
    _, token = context.accounts.issue_token(owner.id, DEMO_TOKEN_NAME, now)
    whip_url = f"{server_url}/api/v1/spaces/{space_id}/whip"
    while True:
        try:
            await speak(whip_url, token, WavSource(SPEECH[0], loop=True), seconds=None)
        except PodiumError as exc:
            log.warning("demo_speaker_retrying", extra={"fields": {"error": exc.detail}})
        await asyncio.sleep(2.0)


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: asyncio only turns Nagle off (TCP_NODELAY) on sockets
    # that declare it, and Nagle adds ~40 ms to small responses such as playlists.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, on_started: Callable[[Started], None]) -> None:
    """Run Podium until SIGINT or SIGTERM. ``on_started`` is told where it listens."""
    sock = _bind(settings.host, settings.port)
    bound_port = sock.getsockname()[1]
    settings = replace(settings, port=bound_port)
    app, context, owner_created = build(settings)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        # Whose X-Forwarded-For to believe is Podium's setting (trusted_proxies), not
        # uvicorn's default of trusting any loopback peer.
        proxy_headers=False,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        http=with_head_timeout(settings.header_timeout_s),
        lifespan="off",
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        listen_url = f"http://{_authority(settings.host, bound_port)}"
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(context.media.run())
            room_states = tasks.create_task(context.hub.run())
            beating = tasks.create_task(heartbeat(context)) if context.fleet else None
            following = (
                tasks.create_task(context.hub.follow_fleet(context.fleet.url))
                if context.fleet
                else None
            )
            reconciling = (
                tasks.create_task(end_rooms_ended_elsewhere(context))
                if context.media_node is not None and settings.role != "web"
                else None
            )
            leasing = tasks.create_task(keep_leases(context)) if context.leases else None
            health = tasks.create_task(context.gate.run())
            if settings.role != "web":
                # A web node serves joins and the room state with its media node away.
                await context.media.wait_ready()
            serving = tasks.create_task(server.serve(sockets=[sock]))
            # uvicorn offers a flag, not an event, for "listening now".
            while not server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            demo_task = None
            demo_page = None
            if server.started and settings.demo:
                space_id = await start_demo_space(context)
                demo_page = f"{context.settings.base_url}/s/{space_id}"
                demo_task = tasks.create_task(run_demo_speaker(context, listen_url, space_id))
            if server.started:
                on_started(
                    Started(
                        listen_url=listen_url,
                        url=context.settings.base_url,
                        owner_token_file=settings.data_dir / OWNER_TOKEN_FILE,
                        owner_created=owner_created,
                        demo_page=demo_page,
                    )
                )
                log.info("started", extra={"fields": {"url": context.settings.base_url}})
            await serving
            if demo_task is not None:
                demo_task.cancel()
            room_states.cancel()
            health.cancel()
            for helper in (beating, following, reconciling, leasing):
                if helper is not None:
                    helper.cancel()
            await context.media.close()

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again for the
    # previous handler: a no-op one lets a requested shutdown end with status 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        asyncio.run(run())
    finally:
        signal.signal(signal.SIGTERM, previous)
        context.db.close()
        if context.fleet is not None:
            context.fleet.leave()
            context.fleet.close()
        shutil.rmtree(context.media.socket.parent, ignore_errors=True)
        sock.close()
