"""Podcast feeds, read by clients nobody here wrote: feedparser reads every field, and
podget (Debian's podcast client) subscribes and downloads the episode, which plays the
broadcast. The live item follows the space from pending to live to ended; feeds answer
304 when unchanged; a host keeps a space out; what a page links to is the feed."""

from __future__ import annotations

import asyncio
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import feedparser
import httpx
import numpy as np

from fleetnodes import eventually
from harness import Server, make_account
from media_signal import RATE, decode, loud_spans, peak_hz
from podium.clients.speak import ToneSource, speak

PODCAST = "https://podcastindex.org/namespace/1.0"
ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
TONE_HZ = 520.0
SPEAK_S = 5.0
# A title as a host may type it: markup, an ampersand, and a character XML cannot carry.
TRICKY_TITLE = "Q&A <live> \x01 \u00e9t\u00e9 \U0001f399"


def _xml(url: str) -> ET.Element:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/rss+xml")
    return ET.fromstring(answer.content)  # noqa: S314 (our own server) well formed, or it raises


def _live_status(url: str, space_id: str) -> str | None:
    for live in _xml(url).iter(f"{{{PODCAST}}}liveItem"):
        if live.findtext("guid") == f"podium:live:{space_id}":
            return live.get("status")
    return None


def _entry(url: str, space_id: str) -> Any:
    parsed = feedparser.parse(httpx.get(url, timeout=30).content)
    assert not parsed.bozo, parsed.get("bozo_exception")
    for entry in parsed.entries:
        if entry.get("id") == f"podium:space:{space_id}":
            return entry
    return None


def test_an_ended_space_is_an_episode_a_podcast_client_downloads(
    server: Server, tmp_path: Path
) -> None:
    host = make_account(server, "feedhost")
    feed_url = f"{server.url}/hosts/{host.handle}/feed.xml"
    later = time.time() + 3600
    with server.client(host.token) as api:
        created = api.post(
            "/api/v1/spaces",
            json={
                "title": TRICKY_TITLE,
                "description": "Listeners' questions, answered live.",
                "scheduled_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(later)),
            },
        )
        assert created.status_code == 201, created.text
        space = created.json()
        assert space["in_feed"] is True
        assert space["feed_url"] == feed_url
        kept_out = api.post("/api/v1/spaces", json={"title": "Off the record", "in_feed": False})
        assert kept_out.json()["in_feed"] is False
    space_id = space["id"]

    # Scheduled: a live item, pending, in the host's feed and in everyone's.
    eventually(lambda: _live_status(feed_url, space_id) == "pending", within=30)
    eventually(lambda: _live_status(f"{server.url}/feed.xml", space_id) == "pending", within=30)
    with server.client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/start").status_code == 200
    eventually(lambda: _live_status(feed_url, space_id) == "live", within=30)
    live = next(
        item
        for item in _xml(feed_url).iter(f"{{{PODCAST}}}liveItem")
        if item.findtext("guid") == f"podium:live:{space_id}"
    )
    enclosure = live.find("enclosure")
    assert enclosure is not None
    assert enclosure.get("url") == f"{server.url}/hls/{space_id}/index.m3u8"
    assert enclosure.get("type") == "application/x-mpegURL"
    assert live.get("start")

    asyncio.run(speak(space["whip_url"], host.token, ToneSource(TONE_HZ, 0.4), seconds=SPEAK_S))
    with server.client(host.token) as api:
        assert api.post(f"/api/v1/spaces/{space_id}/end").status_code == 200
    replay_url = f"{server.url}/hls/{space_id}/replay.m4a"
    eventually(lambda: httpx.get(replay_url, timeout=30).status_code == 200, within=30)
    replay = httpx.get(replay_url, timeout=30).content

    # Ended: an episode, whose enclosure is the replay file with its true size.
    eventually(lambda: _entry(feed_url, space_id) is not None, within=30)
    assert _live_status(feed_url, space_id) == "ended"
    parsed = feedparser.parse(httpx.get(feed_url, timeout=30).content)
    assert parsed.version == "rss20"
    assert parsed.namespaces["itunes"] == ITUNES
    assert parsed.namespaces["podcast"] == PODCAST
    assert parsed.feed.title == f"{host.handle} on Podium"
    assert parsed.feed.author == host.handle
    entry = _entry(feed_url, space_id)
    assert (
        entry.title == "Q&A <live>  \u00e9t\u00e9 \U0001f399"
    )  # only what XML cannot carry is gone
    assert entry.link == f"{server.url}/s/{space_id}"
    assert entry.summary == "Listeners' questions, answered live."
    assert entry.guidislink is False
    assert entry.published_parsed is not None
    [enclosed] = entry.enclosures
    assert enclosed.href == replay_url
    assert enclosed.type == "audio/mp4"
    assert int(enclosed.length) == len(replay)
    local = tmp_path / "replay.m4a"
    local.write_bytes(replay)
    assert abs(int(entry.itunes_duration) - len(decode(str(local))) / RATE) <= 1
    people = [
        person
        for item in _xml(feed_url).iter("item")
        if item.findtext("guid") == f"podium:space:{space_id}"
        for person in item.iter(f"{{{PODCAST}}}person")
    ]
    assert [(p.text, p.get("role")) for p in people] == [(host.handle, "host")]
    assert all(e.get("id") != f"podium:space:{kept_out.json()['id']}" for e in parsed.entries)

    # podget subscribes and downloads the episode: the replay, byte for byte, which plays
    # the broadcast's tone.
    config = tmp_path / "podget"
    library = tmp_path / "library"
    config.mkdir()
    subprocess.run(
        ["podget", "-d", str(config), "--create-config", "podgetrc"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    (config / "serverlist").write_text(f"{feed_url} Podium Show\n")
    fetched = subprocess.run(
        ["podget", "-d", str(config), "-l", str(library), "-n", "--verbosity", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    downloads = [path for path in library.rglob("*.m4a") if path.is_file()]
    assert len(downloads) == 1, (fetched.stdout, fetched.stderr)
    assert downloads[0].read_bytes() == replay
    heard = decode(str(downloads[0]))
    [(start, end)] = loud_spans(heard)
    assert (end - start) / RATE > SPEAK_S - 1
    block = heard[start + RATE // 4 : end - RATE // 4]
    assert abs(peak_hz(block) - TONE_HZ) < 5
    assert float(np.sqrt(np.mean(block**2))) > 0.05


def test_feeds_are_cacheable_linked_from_pages_and_hosts_keep_spaces_out(server: Server) -> None:
    host = make_account(server, "feedkeeper")
    other = make_account(server, "notthehost")
    feed_url = f"{server.url}/hosts/{host.handle}/feed.xml"
    with server.client(host.token) as api:
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
        space = api.post("/api/v1/spaces", json={"title": "Kept", "scheduled_start": later})
        space_id = space.json()["id"]
    eventually(lambda: _live_status(feed_url, space_id) == "pending", within=30)

    # Unchanged: 304 to either validator; HEAD has the headers and no body.
    first = httpx.get(feed_url, timeout=30)
    assert first.headers["cache-control"].startswith("public")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    again = httpx.get(feed_url, headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304
    assert again.content == b""
    assert httpx.get(feed_url, headers={"If-Modified-Since": modified}).status_code == 304
    stale = httpx.get(feed_url, headers={"If-None-Match": '"other"'}, timeout=30)
    assert stale.status_code == 200
    assert stale.content == first.content
    head = httpx.head(feed_url, timeout=30)
    assert head.status_code == 200
    assert head.headers["etag"] == etag
    assert head.content == b""

    # Pages say where their feeds are.
    page = httpx.get(f"{server.url}/s/{space_id}", timeout=30).text
    assert (
        f'<link rel="alternate" type="application/rss+xml" title="{host.handle} on Podium"'
        f' href="/hosts/{host.handle}/feed.xml">'
    ) in page
    home = httpx.get(f"{server.url}/", timeout=30).text
    assert 'type="application/rss+xml" title="Podium: every space" href="/feed.xml"' in home

    # Only the host keeps a space out of the feeds; then it is in neither, and the
    # feed's validator changes.
    path = f"/api/v1/spaces/{space_id}"
    with server.client(other.token) as api:
        refused = api.patch(path, json={"in_feed": False})
        assert refused.status_code == 403, refused.text
    with server.client(host.token) as api:
        changed = api.patch(path, json={"in_feed": False})
        assert changed.status_code == 200, changed.text
        assert changed.json()["in_feed"] is False
        assert api.patch("/api/v1/spaces/nosuchspace", json={"in_feed": True}).status_code == 404
        assert api.patch(path, json={"in_feed": "perhaps"}).status_code == 422
    eventually(lambda: _live_status(feed_url, space_id) is None, within=30)
    assert _live_status(f"{server.url}/feed.xml", space_id) is None
    assert httpx.get(feed_url, headers={"If-None-Match": etag}, timeout=30).status_code == 200

    missing = httpx.get(f"{server.url}/hosts/nobody-here/feed.xml", timeout=30)
    assert missing.status_code == 404
