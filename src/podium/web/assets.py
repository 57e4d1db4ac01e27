"""The pages' static files: styles, scripts and the vendored hls.js, served from memory.

Every file under ``static/`` is read once, when the server starts, into a manifest; only
names in the manifest are served, so no path (``..``, percent-encoded or not, a symlink)
reaches outside the folder, and a request costs a dictionary lookup.

Pages link assets as ``/static/<build>/<name>``, where ``<build>`` is a digest of every
file together. Such a URL never changes content, so it is cached for a year
(``immutable``); a new release has a new build, so a browser never mixes old and new
scripts, and ES modules importing each other by relative URL stay within one build. An
unversioned ``/static/<name>``, or an older build's URL, is answered with the current file
and ``no-cache`` (revalidated by its ETag).
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.types import Receive, Scope, Send

from podium.web.problems import problem

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
BUILD_CHARS = 12
# Below this size compression saves less than the headers it costs.
MIN_GZIP_BYTES = 1024
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".md": "text/markdown; charset=utf-8",
    "": "text/plain; charset=utf-8",  # LICENSE
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    media_type: str
    etag: str


def _media_type(path: Path) -> str:
    known = _TYPES.get(path.suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed or "application/octet-stream"


def _load(directory: Path) -> dict[str, Asset]:
    """Every regular file below ``directory`` (hidden files and caches skipped)."""
    assets: dict[str, Asset] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if not path.is_file() or path.is_symlink():
            continue
        if any(part.startswith((".", "__")) for part in relative.parts):
            continue
        body = path.read_bytes()
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(body) >= MIN_GZIP_BYTES and len(packed) < len(body) else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[relative.as_posix()] = Asset(body, gzipped, _media_type(path), etag)
    return assets


def _build_id(assets: dict[str, Asset]) -> str:
    digest = hashlib.sha256()
    for name, asset in sorted(assets.items()):
        digest.update(name.encode() + b"\0" + asset.etag.encode() + b"\0")
    return digest.hexdigest()[:BUILD_CHARS]


def _is_build(segment: str) -> bool:
    return len(segment) == BUILD_CHARS and all(c in "0123456789abcdef" for c in segment)


class StaticAssets:
    """An ASGI app serving the manifest; mount it at ``/static``."""

    def __init__(self, directory: Path, prefix: str = "/static") -> None:
        self.assets = _load(directory)
        self.build = _build_id(self.assets)
        self.prefix = prefix

    def url(self, name: str) -> str:
        """The immutable URL of ``name``; a missing asset is a bug in a page, so it raises."""
        if name not in self.assets:
            raise KeyError(f"no static asset {name!r}")
        return f"{self.prefix}/{self.build}/{name}"

    def lookup(self, path: str) -> tuple[Asset | None, bool]:
        """The asset a request path (below the mount) names, and whether it is immutable."""
        first, _, rest = path.lstrip("/").partition("/")
        if _is_build(first) and rest:
            return self.assets.get(rest), first == self.build
        return self.assets.get(path.lstrip("/")), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        asset, immutable = self.lookup(path)
        if scope["method"] not in ("GET", "HEAD"):
            response = problem(
                405, "method-not-allowed", "Method not allowed", "static files are read-only"
            )
            response.headers["Allow"] = "GET, HEAD"
        elif asset is None:
            response = problem(404, "not-found", "Not found", "no such static file")
        else:
            await self._send(scope, send, asset, immutable)
            return
        await response(scope, receive, send)

    @staticmethod
    async def _send(scope: Scope, send: Send, asset: Asset, immutable: bool) -> None:
        request = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        headers = [
            (b"content-type", asset.media_type.encode()),
            (b"cache-control", (IMMUTABLE if immutable else REVALIDATE).encode()),
            (b"x-content-type-options", b"nosniff"),
        ]
        body, etag = asset.body, asset.etag
        if asset.gzipped is not None:
            headers.append((b"vary", b"Accept-Encoding"))
            if "gzip" in request.get("accept-encoding", ""):
                # Each encoding is its own representation, with its own validator.
                body, etag = asset.gzipped, asset.etag[:-1] + '-gz"'
                headers.append((b"content-encoding", b"gzip"))
        headers.append((b"etag", etag.encode()))
        status = 200
        matches = request.get("if-none-match", "")
        if etag in {tag.strip() for tag in matches.split(",")}:
            status, body = 304, b""
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
