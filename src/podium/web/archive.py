"""The signed archive of each ended space, served beside its replay, and the keys it is
signed with (:mod:`podium.record.archive` says what it holds and how it is checked).

The signing key is Ed25519, derived from the server's ``secret_key`` (HKDF-SHA256): every
node of a fleet, sharing that secret, signs with the same key, and a key rotation
(``previous_secret_key``) keeps the key of what was signed before published. The public
keys are at ``/.well-known/podium-archive-keys.json``.

The node whose media worker wrote a replay seals the recording at once
(:func:`replay_written`), and stores the replay's size and duration for the podcast
feeds; a recording that ended without being sealed (its node stopped in between) is
sealed when its archive is first asked for.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from podium import clock
from podium.config import Settings
from podium.errors import NotFound
from podium.origin.origin import SPACE_ID
from podium.origin.routes import TooEarly, Upstream
from podium.record import archive
from podium.record.recorder import Recorder
from podium.web.context import Context, get_context
from podium.web.feeds import record_replay

log = logging.getLogger("podium.web")

router = APIRouter(include_in_schema=False)
Ctx = Annotated[Context, Depends(get_context)]

KEYS_PATH = "/.well-known/podium-archive-keys.json"
_INFO = b"podium archive signing key v1"
CORS = {"Access-Control-Allow-Origin": "*"}


def _derive(secret: str) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    assert settings.secret_key is not None  # set by the composition root
    return _derive(settings.secret_key.value)


def published_keys(settings: Settings) -> list[Ed25519PrivateKey]:
    keys = [signing_key(settings)]
    if settings.previous_secret_key is not None:
        keys.append(_derive(settings.previous_secret_key.value))
    return keys


@router.get(KEYS_PATH)
async def keys(context: Ctx) -> JSONResponse:
    """The public keys archives are signed with: the current one first."""
    listed = [
        {
            "id": archive.key_id(key.public_key()),
            "algorithm": "Ed25519",
            "public_key": archive.b64(archive.public_bytes(key.public_key())),
            "current": n == 0,
        }
        for n, key in enumerate(published_keys(context.settings))
    ]
    return JSONResponse(
        {"origin": context.settings.base_url, "keys": listed},
        headers={"Cache-Control": "public, max-age=3600", **CORS},
    )


@router.get("/hls/{space_id}/archive.json")
async def space_archive(space_id: str, request: Request, context: Ctx) -> Response:
    """The signed archive of an ended space (``podium verify`` checks a replay with it)."""
    if not SPACE_ID.fullmatch(space_id):
        raise NotFound(f"no space {space_id!r}")
    upstream: Upstream | None = getattr(request.app.state, "upstream", None)
    if upstream is not None and context.origin.program(space_id) is None:
        return await upstream.get(request, space_id)
    directory = context.origin.recordings / space_id
    path = directory / archive.ARCHIVE_FILE
    if not path.is_file():
        sealed = await asyncio.to_thread(_seal_if_ended, context, directory, space_id)
        if not sealed:
            program = context.origin.program(space_id)
            if program is not None and not program.playlist.ended:
                raise NotFound("the space has not ended: its archive is sealed when it does")
            if upstream is not None:  # a web node's copy: the recording node has it
                return await upstream.get(request, space_id)
            if program is not None:
                raise TooEarly("the archive is being sealed; try again")
            raise NotFound(f"no recording of space {space_id} here")
    return FileResponse(
        path,
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=86400", **CORS},
    )


def _seal_if_ended(context: Context, directory: Path, space_id: str) -> bool:
    if not (directory / "manifest.jsonl").is_file() or not Recorder.recover(directory).ended:
        return False
    return seal(context, directory, space_id)


def seal(context: Context, directory: Path, space_id: str) -> bool:
    key = signing_key(context.settings)
    try:
        archive.seal(directory, space_id, key, context.settings.base_url, clock.now())
    except (archive.ArchiveError, OSError) as exc:
        log.error("archive_not_sealed", extra={"fields": {"space_id": space_id, "error": str(exc)}})
        return False
    return True


def _written(context: Context, space_id: str) -> None:
    directory = context.origin.recordings / space_id
    seal(context, directory, space_id)
    record_replay(context.spaces, directory, space_id)


def replay_written(context: Context, space_id: str) -> None:
    """The media worker here wrote a space's replay file: seal its recording and store
    the replay's size and duration, off the event loop."""
    asyncio.get_running_loop().run_in_executor(None, _written, context, space_id)
