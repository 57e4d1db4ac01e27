"""A fleet on one machine, as separate processes: media nodes and web nodes that share one
PostgreSQL and one Redis, with one signing key and one media secret. Web nodes are given
the first media node's URL; they find any other in the registry."""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from harness import SHARED_SERVER_ENV, Server, migrate, start_server
from services import Postgres, Redis


@dataclass
class Fleet:
    media: Server
    web: list[Server]
    env: dict[str, str]
    data: Path
    extra: list[Server] = field(default_factory=list)
    more_media: list[Server] = field(default_factory=list)

    @property
    def media_nodes(self) -> list[Server]:
        return [self.media, *self.more_media]

    @property
    def owner(self) -> str:
        return self.media.owner_token  # the first node made the owner; all share it

    def add_web(self, name: str) -> Server:
        """One more web node, started now."""
        node = start_server(
            self.data / name,
            env={
                **self.env,
                "PODIUM_ROLE": "web",
                "PODIUM_NODE_NAME": name,
                "PODIUM_MEDIA_URL": self.media.url,
            },
        )
        self.extra.append(node)
        self._share_owner(node)
        return node

    def _share_owner(self, node: Server) -> None:
        """The owner is the fleet's (made by the first node): give each node its token, so
        that tests can act as the owner through any node."""
        (node.data_dir / "owner.token").write_text(self.owner)

    def stop(self) -> None:
        for node in [*self.extra, *self.web, *self.more_media, self.media]:
            node.stop()


def signal_node(node: Server, sig: signal.Signals) -> None:
    """``sig`` to the node's process and its media worker at once."""
    pid = node.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for target in [pid, *map(int, children)]:
        os.kill(target, sig)


def power_cut(node: Server) -> None:
    """SIGKILL the node's process and its media worker at once, as a power cut would."""
    signal_node(node, signal.SIGKILL)
    node.process.wait()


def lease(redis_url: str, space_id: str) -> dict[str, str]:
    """The space's lease as Redis holds it (empty: nobody holds it)."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        fields: dict[str, str] = client.hgetall(f"podium:lease:{space_id}")
        return fields


def after_gap(playlist: str) -> int:
    """Parts a playlist announces after its (first) marked gap."""
    if "#EXT-X-GAP" not in playlist:
        return 0
    return playlist.split("#EXT-X-GAP", 1)[1].count("#EXT-X-PART:")


@dataclass
class Placed:
    """A live space, the media node holding its lease, and the other one (of two)."""

    space_id: str
    holder: Server
    other: Server
    other_name: str


def start_space(fleet: Fleet, redis_url: str, token: str, title: str) -> Placed:
    """A space taken live through the first web node, and where it was placed."""
    with fleet.web[0].client(token) as api:
        space_id = api.post("/api/v1/spaces", json={"title": title}).json()["id"]
        started = api.post(f"/api/v1/spaces/{space_id}/start")
        assert started.status_code == 200, started.text
    name = lease(redis_url, space_id)["node"]
    holder = fleet.media_nodes[int(name.removeprefix("media-")) - 1]
    other_name = "media-1" if name == "media-2" else "media-2"
    other = fleet.media_nodes[int(other_name.removeprefix("media-")) - 1]
    return Placed(space_id, holder, other, other_name)


def live_space_with_guest(fleet: Fleet, host_token: str, guest_token: str, title: str) -> str:
    """A space taken live by the host through the first web node, with the guest invited
    to its stage through the second."""
    with fleet.web[0].client(host_token) as api:
        space_id = str(api.post("/api/v1/spaces", json={"title": title}).json()["id"])
        assert api.post(f"/api/v1/spaces/{space_id}/start").status_code == 200
        invite = api.post(f"/api/v1/spaces/{space_id}/invites").json()["invite"]
    with fleet.web[1].client(guest_token) as api:
        accepted = api.post(f"/api/v1/spaces/{space_id}/invites/accept", json={"invite": invite})
        assert accepted.status_code == 200, accepted.text
    return space_id


def eventually(check: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.2)


def fleet_env(postgres: Postgres, redis_server: Redis, **settings: str) -> dict[str, str]:
    """What every node of a fleet is given: a new database (migrated, as an operator
    would), the Redis, one signing key and one media secret, and ``settings``."""
    url = postgres.create_database("fleet")
    migrate(url)
    return {
        **SHARED_SERVER_ENV,
        "PODIUM_DATABASE_URL": url,
        "PODIUM_REDIS_URL": redis_server.url,
        "PODIUM_SECRET_KEY": secrets.token_urlsafe(40),
        "PODIUM_MEDIA_SECRET": secrets.token_urlsafe(40),
        **{f"PODIUM_{name.upper()}": value for name, value in settings.items()},
    }


def start_fleet(
    postgres: Postgres,
    redis_server: Redis,
    data: Path,
    web: int,
    media: int = 1,
    media_env: list[dict[str, str]] | None = None,
    **settings: str,
) -> Fleet:
    """``media`` media nodes (named media-1…, each with its ``media_env``) and ``web`` web
    nodes (web-1…)."""
    env = fleet_env(postgres, redis_server, **settings)
    extra = media_env or [{} for _ in range(media)]

    def media_node(n: int) -> Server:
        name = f"media-{n}"
        directory = data / ("media" if n == 1 else name)
        node_env = {**env, "PODIUM_ROLE": "media", "PODIUM_NODE_NAME": name, **extra[n - 1]}
        return start_server(directory, env=node_env)

    fleet = Fleet(media_node(1), [], env, data)
    try:
        for n in range(2, media + 1):
            fleet.more_media.append(media_node(n))
            fleet._share_owner(fleet.more_media[-1])
        for n in range(1, web + 1):
            fleet.web.append(
                start_server(
                    data / f"web-{n}",
                    env={
                        **env,
                        "PODIUM_ROLE": "web",
                        "PODIUM_NODE_NAME": f"web-{n}",
                        "PODIUM_MEDIA_URL": fleet.media.url,
                    },
                )
            )
            fleet._share_owner(fleet.web[-1])
    except BaseException:
        fleet.stop()
        raise
    return fleet


def manifest_parts(manifest: Path) -> list[dict[str, object]]:
    """The part lines of a recording's manifest (none while it has none)."""
    if not manifest.exists():
        return []
    lines = [json.loads(line) for line in manifest.read_text().splitlines() if line]
    return [line for line in lines if line["kind"] == "part"]


def media_rooms(fleet: Fleet, node: Server) -> dict[str, dict[str, list[str]]]:
    """What the node's media worker runs: its rooms, each with its speakers."""
    answer = httpx.get(
        f"{node.url}/internal/media/status",
        headers={"Authorization": f"Bearer {fleet.env['PODIUM_MEDIA_SECRET']}"},
        timeout=10,
    )
    rooms: dict[str, dict[str, list[str]]] = answer.json()["rooms"]
    return rooms


def speakers_on(fleet: Fleet, node: Server, space_id: str) -> list[str]:
    """The speakers of the space on the node's media worker."""
    return list((media_rooms(fleet, node).get(space_id) or {}).get("speakers", []))
