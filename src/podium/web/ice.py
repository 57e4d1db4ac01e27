"""The STUN and TURN servers a speaker's client reaches the media through (``ice_servers``).

A speaker behind NAT or a firewall that lets no UDP through reaches a media node through
a TURN relay. Podium works with coturn's shared-secret scheme (``use-auth-secret``, the
"REST API" of draft-uberti-behave-turn-rest): each speaker is given credentials of their
own, a username ``EXPIRY:WHO`` and, as the password, the Base64 HMAC-SHA1 of that username
under the secret Podium and coturn share (``turn_secret``). coturn checks the HMAC and the
expiry itself; nothing is stored, and no fixed password ever reaches a page.

They reach clients as RFC 9725's ``Link: <turn:...>; rel="ice-server"`` headers, on the
``201`` answer to a WHIP offer and on an ``OPTIONS`` request to the WHIP URL before it (as
WHIP's drafts had it), which Podium's own clients (the web page, ``podium speak``) make
so that their one offer already holds the relay's candidates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math

from aiortc import RTCIceServer

from podium.config import Settings, ice_server_urls
from podium.ingest.whip import ice_server_links


def turn_credentials(secret: str, who: str, now: float, ttl_s: int) -> tuple[str, str]:
    """A username and password coturn accepts until ``now + ttl_s``, for ``who``.

    coturn reads the expiry before the first ``:`` of the username, so ``who`` is kept
    free of colons.
    """
    expiry = math.floor(now) + ttl_s
    username = f"{expiry}:{who.replace(':', '.')}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def servers_for(settings: Settings, who: str, now: float) -> list[RTCIceServer]:
    """The configured servers, TURN ones with credentials minted for ``who``; in the
    operator's order (a client that uses one TURN server only takes the first)."""
    urls = ice_server_urls(settings.ice_servers)
    stun = [url for url in urls if url.startswith("stun")]
    turn = [url for url in urls if url.startswith("turn")]
    servers = [RTCIceServer(urls=url) for url in stun]
    if turn and settings.turn_secret is not None:
        username, password = turn_credentials(
            settings.turn_secret.value, who, now, settings.turn_credentials_ttl_s
        )
        servers += [RTCIceServer(urls=url, username=username, credential=password) for url in turn]
    return servers


def links_for(settings: Settings, who: str, now: float) -> list[str]:
    """``Link`` header values advertising the servers to ``who`` (RFC 9725 section 4.6)."""
    return ice_server_links(servers_for(settings, who, now))
