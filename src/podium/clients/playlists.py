"""What a crowd of simulated listeners works out once for everyone.

A crowd behind an edge receives the same playlist bytes again and again, and its
listeners stand at a few places in the same playlists: parsing those bytes, resolving
their URIs, and deciding the next step from each place are most of a listener's work if
each does them for itself. :class:`PlaylistCache` does each once, keyed by the bytes or
by the parsed playlist's identity (held, so that an identity is never reused while it is
a key), within a fixed size.
"""

from __future__ import annotations

import zlib
from typing import Any
from urllib.parse import urljoin

from podium.clients.hls import (
    PartRef,
    Playlist,
    audio_variant,
    is_multivariant,
    merge_delta,
    parse_multivariant,
    parse_playlist,
)
from podium.clients.httpwire import requestable
from podium.clients.listen import Cursor, FetchPart, Step, advance, next_step

_GZIP_MAGIC = b"\x1f\x8b"


def _inflated(body: bytes) -> bytes:
    """``body`` gzip-decompressed if it is compressed (a playlist begins with ``#EXTM3U``,
    so gzip's magic number tells them apart)."""
    if body[:2] != _GZIP_MAGIC:
        return body
    try:
        return zlib.decompress(body, wbits=31)
    except zlib.error as exc:
        raise ValueError(f"broken gzip: {exc}") from None


class PlaylistCache:
    """Playlists parsed once per distinct body, and media URIs resolved once: a crowd
    following one stream receives the same bytes again and again, and parsing them is
    most of a listener's CPU."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._full: dict[bytes, Playlist] = {}
        self._merged: dict[tuple[int, bytes], tuple[Playlist, Playlist]] = {}
        self._urls: dict[tuple[str, str], str] = {}
        self._after: dict[int, tuple[PartRef, Cursor, float]] = {}
        self._steps: dict[tuple[int, int, int], tuple[Playlist, Step]] = {}
        self._skips: dict[int, tuple[Playlist, float | None]] = {}
        self._variants: dict[bytes, str | None] = {}

    def resolve(self, base: str, uri: str) -> str:
        """``uri`` (from the playlist at ``base``) as an absolute URL (RFC 3986 5.2).

        Raises:
            ValueError: it holds what a request line cannot (a space, a control, a
                character outside ASCII).
        """
        key = (base, uri)
        url = self._urls.get(key)
        if url is None:
            url = urljoin(base, uri)
            if not requestable(url):
                raise ValueError(f"the playlist lists {uri[:80]!r}, which cannot be requested")
            self._remember(self._urls, key, url)
        return url

    def variant(self, body: bytes) -> str | None:
        """The URI of the audio variant when ``body`` is a multivariant playlist (a
        space's entry point), else ``None``.

        Raises:
            ValueError: a multivariant playlist with no AAC variant, or broken compression.
        """
        if body in self._variants:
            return self._variants[body]
        text = _inflated(body).decode("utf-8", errors="replace")
        uri = audio_variant(parse_multivariant(text)).uri if is_multivariant(text) else None
        self._remember(self._variants, body, uri)
        return uri

    def parse(self, body: bytes) -> Playlist:
        """The playlist ``body`` holds, gzip-compressed or not (a playlist begins with
        ``#EXTM3U``, so gzip's magic number tells them apart): the crowd receives the same
        compressed bytes, and each is inflated and parsed once.

        Raises:
            ValueError: not a media playlist, or broken compression.
        """
        playlist = self._full.get(body)
        if playlist is None:
            playlist = parse_playlist(_inflated(body).decode("utf-8", errors="replace"))
            self._remember(self._full, body, playlist)
        return playlist

    def merge(self, previous: Playlist, body: bytes) -> Playlist:
        """The full playlist a delta update ``body`` stands for, given ``previous``.

        Raises:
            ValueError: malformed, or ``previous`` lacks skipped segments.
        """
        delta = self.parse(body)
        if not delta.skipped:
            return delta
        key = (id(previous), body)
        cached = self._merged.get(key)
        if cached is not None and cached[0] is previous:
            return cached[1]
        merged = merge_delta(previous, delta)
        self._remember(self._merged, key, (previous, merged))
        return merged

    def next_step(self, playlist: Playlist, cursor: Cursor) -> Step:
        """:func:`~podium.clients.listen.next_step`, worked out once for each playlist
        and place in it: a crowd behind an edge holds the same playlists, and its
        listeners stand at a few places in them. (With parts, the place is the segment
        and the part: the part's offset follows from them.)"""
        if playlist.part_target is None:
            return next_step(playlist, cursor)
        key = (id(playlist), cursor.msn, cursor.index)
        entry = self._steps.get(key)
        if entry is None or entry[0] is not playlist:
            entry = (playlist, next_step(playlist, cursor))
            self._remember(self._steps, key, entry, 8 * self.size)
        return entry[1]

    def skip_window(self, playlist: Playlist) -> float | None:
        """Seconds after loading ``playlist`` that a delta update may still be asked for:
        half its ``CAN-SKIP-UNTIL`` (8216bis 6.2.5.1 asks for a playlist "no older than
        half the Skip Boundary"); ``None`` when it offers none."""
        entry = self._skips.get(id(playlist))
        if entry is None or entry[0] is not playlist:
            until = playlist.can_skip_until
            entry = (playlist, None if until is None else float(until) / 2)
            self._remember(self._skips, id(playlist), entry)
        return entry[1]

    def after(self, step: FetchPart) -> tuple[Cursor, float]:
        """The cursor after the part of ``step``, and the part's seconds: worked out once
        for the crowd (exact fractions are not cheap, and every part takes this step)."""
        part = step.segment.parts[step.index]
        entry = self._after.get(id(part))
        if entry is None or entry[0] is not part:
            entry = (part, advance(step), float(part.duration))
            self._remember(self._after, id(part), entry)
        return entry[1], entry[2]

    def _remember(
        self, table: dict[Any, Any], key: Any, value: Any, size: int | None = None
    ) -> None:
        if len(table) >= (size or self.size):
            del table[next(iter(table))]
        table[key] = value


__all__ = ["PlaylistCache"]
