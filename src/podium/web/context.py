"""What request handlers need, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from podium.config import Settings
from podium.control.accounts import Accounts
from podium.control.db import Database
from podium.control.ratelimit import TokenBuckets
from podium.control.rooms import Rooms
from podium.control.spaces import Spaces
from podium.media.link import MediaLink
from podium.origin.origin import Origin
from podium.web.metrics import Metrics

if TYPE_CHECKING:
    from podium.web.admission import Gate
    from podium.web.roomstate import RoomHub


@dataclass(slots=True)
class Context:
    settings: Settings
    db: Database
    accounts: Accounts
    spaces: Spaces
    metrics: Metrics
    signin_by_client: TokenBuckets
    signin_by_handle: TokenBuckets
    signup_by_client: TokenBuckets
    origin: Origin
    media: MediaLink
    rooms: Rooms
    # Set right after construction: the hub reads everything else in the context.
    hub: RoomHub = field(init=False)
    gate: Gate = field(init=False)
    # New joins per client address (set with the rest by the composition root).
    join_by_client: TokenBuckets = field(init=False)
    # Listener writes (beacons, reactions, hands…) per client address.
    writes_by_client: TokenBuckets = field(init=False)


async def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


def signing_key(context: Context) -> bytes:
    """The key that signs listener tickets and invites (set by the composition root)."""
    assert context.settings.secret_key is not None
    return context.settings.secret_key.value.encode()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
