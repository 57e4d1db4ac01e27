"""What request handlers need, built once by the composition root."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from podium.config import Settings
from podium.control.accounts import Accounts
from podium.control.db import Database
from podium.control.fleet import Fleet, RateLimiter
from podium.control.placement import Leases
from podium.control.rooms import Rooms
from podium.control.spaces import Spaces
from podium.media.link import MediaLink
from podium.origin.origin import Origin
from podium.web.metrics import Metrics

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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
    signin_by_client: RateLimiter
    signin_by_handle: RateLimiter
    signup_by_client: RateLimiter
    origin: Origin
    media: MediaLink
    rooms: Rooms
    # The fleet this node is one of (its Redis), or None for a node on its own.
    fleet: Fleet | None
    # This node's name where several share the database (whose media worker runs which
    # room is recorded under it), or None for a node on its own.
    media_node: str | None
    # Set right after construction: the hub reads everything else in the context.
    hub: RoomHub = field(init=False)
    gate: Gate = field(init=False)
    # New joins per client address (set with the rest by the composition root).
    join_by_client: RateLimiter = field(init=False)
    # Listener writes (beacons, reactions, hands…) per client address.
    writes_by_client: RateLimiter = field(init=False)
    # A media node's leases on the spaces it runs (None on any other node).
    leases: Leases | None = None
    # The spaces a media node is taking on now (handed over, or taken over): their room
    # is about to start here, so nothing else starts it meanwhile.
    arriving: set[str] = field(default_factory=set)


async def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


def signing_key(context: Context) -> bytes:
    """The key that signs listener tickets and invites (set by the composition root)."""
    assert context.settings.secret_key is not None
    return context.settings.secret_key.value.encode()


def verifying_keys(context: Context) -> list[bytes]:
    """The keys a ticket, invite or queue place may be signed with: the signing key, and
    the one it replaced while a rotation is under way."""
    previous = context.settings.previous_secret_key
    return [signing_key(context)] + ([previous.value.encode()] if previous else [])


def client_address(request: Request) -> str:
    """The address of the person behind a request, for per-address limits.

    Behind edge caches every request comes from an edge: when the peer is one of the
    ``trusted_proxies``, the address is the right-most one in ``X-Forwarded-For`` that is
    not itself a trusted proxy (the left-most entries are whatever the client claimed).
    """
    peer = request.client.host if request.client else "unknown"
    trusted = _networks(request.app.state.context.settings.trusted_proxies)
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _within(hop, trusted):
            return hop
    return peer


@functools.lru_cache(maxsize=4)
def _networks(text: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(item.strip()) for item in text.split(",") if item.strip())


def _within(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
