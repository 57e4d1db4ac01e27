"""Podcast feeds: every ended space is an episode, in any podcast app.

Two feeds, RSS 2.0 with Apple's ``itunes:`` tags and the Podcasting 2.0 ``podcast:``
namespace: ``/feed.xml`` (the spaces of everyone) and ``/hosts/{handle}/feed.xml`` (one
host's). Each ended space whose replay file is written is an ``item``: its enclosure is
that file (``/hls/{id}/replay.m4a``, which answers byte ranges) with its true size and
type, its duration, a ``guid`` that never changes, the description, and a
``podcast:person`` for the host and each co-host and speaker on its stage. A space
scheduled or live, or ended in the last day, is also a ``podcast:liveItem`` (``status``
pending, live, ended; its start and end; the live HLS as its enclosure), so apps that
know live items show it coming and on air. A host keeps a space out of the feeds with
``in_feed: false`` (when creating it, or ``PATCH /api/v1/spaces/{id}``).

Feeds are cacheable: ``ETag`` and ``Last-Modified``, answered ``304`` when unchanged, and
rendered at most once every :data:`RENDER_CACHE_S` a node whatever the crowd asks.

The replay file's size and duration are stored with the space (:meth:`Spaces.set_replay`)
by the node whose media worker wrote it, as soon as it has
(:func:`podium.web.archive.replay_written`), so
any node renders the feed without reaching the file; a space whose size is not stored
yet is looked for on this node's disk once (a replay from before the feeds existed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from podium import clock
from podium.control.accounts import User
from podium.control.lifecycle import Space, SpaceStatus
from podium.control.spaces import Spaces
from podium.control.stage import Role
from podium.errors import NotFound, PodiumError
from podium.record.export import replay_facts
from podium.web.context import Context, get_context

log = logging.getLogger("podium.web")

router = APIRouter(include_in_schema=False)
Ctx = Annotated[Context, Depends(get_context)]

FEED_TYPE = "application/rss+xml; charset=utf-8"
REPLAY_TYPE = "audio/mp4"
LIVE_TYPE = "application/x-mpegURL"
CACHE_CONTROL = "public, max-age=60"
# How long a rendered feed is served again as it is (a crowd of podcast apps polling).
RENDER_CACHE_S = 5.0
# How long an ended space stays a live item (status "ended") beside its episode.
ENDED_LIVE_ITEM_S = 86_400.0
# The namespace podcast:guid values are made in (Podcasting 2.0: UUIDv5 of the feed URL).
PODCAST_GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ATOM = "http://www.w3.org/2005/Atom"
for _prefix, _uri in (("itunes", ITUNES), ("podcast", PODCAST), ("atom", ATOM)):
    ET.register_namespace(_prefix, _uri)

# Characters XML 1.0 cannot carry, even escaped: a title holding one would break the feed.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ROLES = {Role.HOST: "host", Role.COHOST: "co-host", Role.SPEAKER: "guest"}


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    etag: str
    last_modified: float
    at: float


_rendered: dict[tuple[int, str | None], Rendered] = {}


# -- the routes --------------------------------------------------------------------------


@router.api_route("/feed.xml", methods=["GET", "HEAD"])
async def site_feed(request: Request, context: Ctx) -> Response:
    """The podcast feed of every host's spaces."""
    rendered = await _render(context, None)
    return _answer(request, rendered)


@router.api_route("/hosts/{handle}/feed.xml", methods=["GET", "HEAD"])
async def host_feed(handle: str, request: Request, context: Ctx) -> Response:
    """One host's podcast feed."""
    host = await asyncio.to_thread(context.accounts.find_by_handle, handle.lower())
    if host is None:
        return Response(f"no host named {handle!r}\n", status_code=404, media_type="text/plain")
    rendered = await _render(context, host)
    return _answer(request, rendered)


def feed_links(host: User | None) -> list[tuple[str, str]]:
    """The feeds a page links to (``<link rel="alternate">``, on the page's own origin):
    a host's, then everyone's."""
    links = [] if host is None else [(_host_title(host), host_feed_url("", host))]
    return [*links, ("Podium: every space", "/feed.xml")]


def host_feed_url(base: str, host: User) -> str:
    return f"{base}/hosts/{host.handle}/feed.xml"


def _answer(request: Request, rendered: Rendered) -> Response:
    headers = {
        "ETag": rendered.etag,
        "Last-Modified": format_datetime(
            datetime.fromtimestamp(int(rendered.last_modified), UTC), usegmt=True
        ),
        "Cache-Control": CACHE_CONTROL,
        "Access-Control-Allow-Origin": "*",
    }
    if _not_modified(request, rendered):
        return Response(status_code=304, headers=headers)
    body = b"" if request.method == "HEAD" else rendered.body
    headers["Content-Length"] = str(len(rendered.body))
    return Response(body, media_type=FEED_TYPE, headers=headers)


def _not_modified(request: Request, rendered: Rendered) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present; else If-Modified-Since."""
    if (tags := request.headers.get("if-none-match")) is not None:
        wanted = {tag.strip().removeprefix("W/") for tag in tags.split(",")}
        return "*" in wanted or rendered.etag in wanted
    if (since := request.headers.get("if-modified-since")) is not None:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        return int(rendered.last_modified) <= moment.timestamp()
    return False


# -- rendering ---------------------------------------------------------------------------


async def _render(context: Context, host: User | None) -> Rendered:
    key = (id(context), None if host is None else host.id)
    now = time.monotonic()
    cached = _rendered.get(key)
    if cached is not None and now - cached.at < RENDER_CACHE_S:
        return cached
    rendered = await asyncio.to_thread(_build, context, host, now)
    _rendered[key] = rendered
    return rendered


def _build(context: Context, host: User | None, now: float) -> Rendered:
    host_id = None if host is None else host.id
    spaces = context.spaces.feed(host_id)
    unknown = [s.id for s in spaces if s.status is SpaceStatus.ENDED and s.replay_bytes is None]
    if [space_id for space_id in unknown if _look_for_replay(context, space_id)]:
        spaces = context.spaces.feed(host_id)
    body = _xml(context, host, spaces, clock.now())
    last = max(
        (s.ended_at or s.started_at or s.created_at for s in spaces),
        default=host.created_at if host is not None else 0.0,
    )
    digest = hashlib.sha256(body).hexdigest()[:32]
    return Rendered(body, f'"{digest}"', last, now)


def _look_for_replay(context: Context, space_id: str) -> bool:
    """A replay whose size was not stored (written before the feeds, or its note lost):
    read it from this node's disk, if it is here."""
    return record_replay(context.spaces, context.origin.recordings / space_id, space_id)


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k.rstrip("_"): _text(v) for k, v in attrs.items()})
    if text is not None:
        element.text = _text(text)
    return element


def _rfc2822(moment: float) -> str:
    return format_datetime(datetime.fromtimestamp(moment, UTC), usegmt=True)


def _host_title(host: User) -> str:
    return f"{host.display_name or host.handle} on Podium"


def _xml(context: Context, host: User | None, spaces: list[Space], now: float) -> bytes:
    base = context.settings.base_url
    url = f"{base}/feed.xml" if host is None else host_feed_url(base, host)
    title = "Podium: every space" if host is None else _host_title(host)
    about = (
        "Live audio spaces, and the unedited replay of each one the moment it ends."
        if host is None
        else f"The spaces hosted by {host.display_name or host.handle}: live, then replays."
    )
    rss = ET.Element("rss", {"version": "2.0"})
    channel = _sub(rss, "channel")
    _sub(channel, "title", title)
    _sub(channel, "link", f"{base}/")
    _sub(channel, "description", about)
    _sub(channel, "language", "en")
    _sub(channel, "generator", "Podium")
    _sub(channel, f"{{{ATOM}}}link", href=url, rel="self", type="application/rss+xml")
    author = "Podium" if host is None else (host.display_name or host.handle)
    _sub(channel, f"{{{ITUNES}}}author", author)
    _sub(channel, f"{{{ITUNES}}}explicit", "false")
    _sub(channel, f"{{{ITUNES}}}type", "episodic")
    _sub(channel, f"{{{ITUNES}}}category", text_="Society & Culture")
    _sub(channel, f"{{{PODCAST}}}guid", str(uuid.uuid5(PODCAST_GUID_NAMESPACE, _bare(url))))
    _sub(channel, f"{{{PODCAST}}}medium", "podcast")
    hosts: dict[str, User] = {} if host is None else {host.id: host}
    people = _People(context, hosts)
    for space in spaces:
        if _is_live_item(space, now):
            _live_item(channel, base, space, people)
    episodes = [s for s in spaces if s.status is SpaceStatus.ENDED and s.replay_bytes]
    if episodes:
        _sub(channel, "lastBuildDate", _rfc2822(max(s.ended_at or 0.0 for s in episodes)))
    for space in episodes:
        _episode(channel, base, space, people)
    ET.indent(rss)
    xml: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def _bare(url: str) -> str:
    """A feed URL as podcast:guid is made from: no scheme, no trailing slash."""
    return re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", url).rstrip("/")


def _is_live_item(space: Space, now: float) -> bool:
    if space.status is SpaceStatus.SCHEDULED:
        return space.scheduled_start is not None
    if space.status is SpaceStatus.LIVE:
        return True
    return space.ended_at is not None and now - space.ended_at < ENDED_LIVE_ITEM_S


class _People:
    """Who was on each space's stage, and its host, read once per rendering."""

    def __init__(self, context: Context, hosts: dict[str, User]) -> None:
        self._context = context
        self._hosts = hosts

    def host(self, space: Space) -> User:
        if space.host_id not in self._hosts:
            self._hosts[space.host_id] = self._context.accounts.get_user(space.host_id)
        return self._hosts[space.host_id]

    def of(self, space: Space) -> list[tuple[str, str]]:
        """(name, podcast:person role) for the host first, then everyone on the stage."""
        host = self.host(space)
        people = [(host.display_name or host.handle, "host")]
        try:
            seats = self._context.rooms.stage(space.id).seats
        except (NotFound, PodiumError):
            return people
        for seat in seats:
            if seat.role is not Role.HOST and seat.name:
                people.append((seat.name, _ROLES[seat.role]))
        return people


def _common(item: ET.Element, base: str, space: Space, people: _People) -> None:
    _sub(item, "title", space.title)
    _sub(item, "link", f"{base}/s/{space.id}")
    _sub(item, "description", space.description or space.title)
    for name, role in people.of(space):
        _sub(item, f"{{{PODCAST}}}person", name, role=role)


def _episode(channel: ET.Element, base: str, space: Space, people: _People) -> None:
    item = _sub(channel, "item")
    _common(item, base, space, people)
    _sub(item, "guid", f"podium:space:{space.id}", isPermaLink="false")
    _sub(item, "pubDate", _rfc2822(space.ended_at or space.created_at))
    _sub(
        item,
        "enclosure",
        url=f"{base}/hls/{space.id}/replay.m4a",
        length=str(space.replay_bytes),
        type=REPLAY_TYPE,
    )
    _sub(item, f"{{{ITUNES}}}duration", str(round(space.replay_seconds or 0.0)))
    _sub(item, f"{{{ITUNES}}}episodeType", "full")
    _sub(item, f"{{{ITUNES}}}explicit", "false")
    alternate = _sub(item, f"{{{PODCAST}}}alternateEnclosure", type=LIVE_TYPE)
    _sub(alternate, f"{{{PODCAST}}}source", uri=f"{base}/hls/{space.id}/index.m3u8")


def _live_item(channel: ET.Element, base: str, space: Space, people: _People) -> None:
    if space.status is SpaceStatus.SCHEDULED:
        status, start, end = "pending", space.scheduled_start, None
    elif space.status is SpaceStatus.LIVE:
        status, start, end = "live", space.started_at, None
    else:
        status, start, end = "ended", space.started_at, space.ended_at
    attrs = {"status": status, "start": clock.rfc3339(start or space.created_at) or ""}
    if end is not None:
        attrs["end"] = clock.rfc3339(end) or ""
    item = _sub(channel, f"{{{PODCAST}}}liveItem", **attrs)
    _common(item, base, space, people)
    _sub(item, "guid", f"podium:live:{space.id}", isPermaLink="false")
    _sub(item, "enclosure", url=f"{base}/hls/{space.id}/index.m3u8", length="0", type=LIVE_TYPE)
    _sub(item, f"{{{PODCAST}}}contentLink", "Listen on Podium", href=f"{base}/s/{space.id}")


# -- the replay's size and duration ------------------------------------------------------


def record_replay(spaces: Spaces, directory: Path, space_id: str) -> bool:
    """Store the size and duration of the replay file in ``directory``, if it is there."""
    facts = replay_facts(directory)
    if facts is None:
        return False
    try:
        spaces.set_replay(space_id, *facts)
    except PodiumError as exc:  # the database is away: the feed looks again later
        log.warning("replay_facts_not_stored", extra={"fields": {"error": exc.detail}})
        return False
    return True
