"""``podium verify URL_OR_FILE``: is this replay the unedited recording?

It takes what a listener has: the replay's address (``…/hls/ID/replay.m4a``), its HLS
playlist (``…/hls/ID/index.m3u8`` or ``live.m3u8``), the space's page (``…/s/ID``), or a
downloaded file (with ``--archive``). It fetches the signed archive beside the replay and
the server's published keys, and says in words whether the replay is the recording, from
its first part to its last, with the recording's own gaps and why; or exactly where it
differs. Exit status: 0 unedited, 1 not, 2 it could not be checked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from podium.clients import hls
from podium.record import archive

_SPACE_URL = re.compile(r"^(?P<base>https?://[^/]+)(?:/hls|/s)/(?P<space>[A-Za-z0-9_-]+)(?:/|$)")
TIMEOUT_S = 60.0


def add_parser(commands: Any) -> None:
    verify = commands.add_parser(
        "verify", help="check that a replay is the unedited, signed recording"
    )
    verify.add_argument(
        "replay",
        metavar="URL_OR_FILE",
        help="the replay (M4A URL or file, HLS playlist URL) or the space's page URL",
    )
    verify.add_argument(
        "--archive",
        metavar="URL_OR_FILE",
        help="the signed archive (default: archive.json beside the replay)",
    )
    verify.add_argument(
        "--keys",
        metavar="URL_OR_FILE",
        help="the server's published keys (default: its /.well-known/podium-archive-keys.json)",
    )
    verify.add_argument("--json", action="store_true", help="print the findings as JSON")
    verify.set_defaults(handler=run)


def _read(where: str, client: httpx.Client) -> bytes:
    if re.match(r"^https?://", where):
        answer = client.get(where)
        if answer.status_code != 200:
            raise archive.ArchiveError(f"{where} answered {answer.status_code}")
        return answer.content
    return Path(where).read_bytes()


def run(args: argparse.Namespace) -> int:
    try:
        with httpx.Client(timeout=TIMEOUT_S, follow_redirects=True) as client:
            report = _verify(args, client)
    except (archive.ArchiveError, httpx.HTTPError, OSError) as exc:
        print(f"podium verify: cannot check {args.replay}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        document = report.archive
        findings = {
            "unedited": report.unedited,
            "space": document["space"],
            "origin": document["origin"],
            "sealed_at": document["sealed_at"],
            "key_id": document["key_id"],
            "signer_trusted": report.signer_trusted,
            "problems": report.problems,
            "gaps": report.gaps(),
            "notes": report.notes,
        }
        print(json.dumps(findings, indent=2))
    else:
        print(report.words())
    return 0 if report.unedited else 1


def _verify(args: argparse.Namespace, client: httpx.Client) -> archive.Report:
    target: str = args.replay
    remote = _SPACE_URL.match(target)
    if remote is None and args.archive is None:
        raise archive.ArchiveError("a file needs --archive (the archive.json of its space)")
    base = remote.group("base") if remote else None
    space = remote.group("space") if remote else None
    archive_at = args.archive or f"{base}/hls/{space}/archive.json"
    document = archive.load(_read(archive_at, client))
    trusted = _trusted(args.keys, base or _origin_of(archive_at), client)
    if remote is None:
        return archive.verify_file(Path(target), document, trusted)
    path = urlsplit(target).path
    if path.endswith(".m3u8"):
        return _verify_hls(target, document, trusted, client)
    replay_url = target if path.endswith(".m4a") else f"{base}/hls/{space}/replay.m4a"
    with tempfile.TemporaryDirectory(prefix="podium-verify-") as scratch:
        local = Path(scratch) / "replay.m4a"
        with client.stream("GET", replay_url) as answer:
            if answer.status_code != 200:
                raise archive.ArchiveError(f"{replay_url} answered {answer.status_code}")
            with local.open("wb") as out:
                for chunk in answer.iter_bytes():
                    out.write(chunk)
        return archive.verify_file(local, document, trusted)


def _origin_of(where: str) -> str | None:
    parts = urlsplit(where)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None


def _trusted(keys_at: str | None, base: str | None, client: httpx.Client) -> list[bytes]:
    """The public keys the server publishes (none known: the archive's is not checked)."""
    where = keys_at or (f"{base}/.well-known/podium-archive-keys.json" if base else None)
    if where is None:
        return []
    try:
        listed = json.loads(_read(where, client))
        return [archive.unb64(str(key["public_key"])) for key in listed["keys"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise archive.ArchiveError(f"{where} is not a list of keys: {exc}") from exc


def _verify_hls(
    url: str, document: dict[str, Any], trusted: list[bytes], client: httpx.Client
) -> archive.Report:
    text = _read(url, client).decode()
    if hls.is_multivariant(text):
        url = urljoin(url, hls.audio_variant(hls.parse_multivariant(text)).uri)
        text = _read(url, client).decode()
    playlist = hls.parse_playlist(text)
    if not playlist.ended:
        raise archive.ArchiveError("the playlist is still live: check it once the space ends")
    segments: list[tuple[int, bytes | None]] = []
    for segment in playlist.segments:
        if segment.gap or segment.uri is None:
            segments.append((segment.msn, None))
        else:
            segments.append((segment.msn, _read(urljoin(url, segment.uri), client)))
    return archive.verify_segments(segments, document, trusted)
