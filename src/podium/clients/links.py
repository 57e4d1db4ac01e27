"""ICE servers from ``Link`` headers, as a WHIP endpoint advertises them (RFC 9725 4.6).

One header value per server URL, ``<turn:host?transport=tcp>; rel="ice-server";
username="u"; credential="c"; credential-type="password"`` (RFC 8288's syntax: parameters
are tokens or quoted strings, values of one header are separated by commas). Anything
else is skipped: a server may add links of other relations, and a value this cannot read
is no reason to refuse to speak.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aiortc import RTCIceServer

_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = rf"\s*;\s*[\w-]+\s*(?:=\s*(?:{_QUOTED}|[^;,\s]*))?"
_VALUE = re.compile(rf"\s*<(?P<url>[^>]*)>(?P<params>(?:{_PARAM})*)\s*(?:,|$)")
_ONE_PARAM = re.compile(
    r'\s*;\s*(?P<name>[\w-]+)\s*(?:=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^;,\s]*)))?'
)
_ESCAPE = re.compile(r"\\(.)")


def ice_servers_from_links(headers: Iterable[str]) -> list[RTCIceServer]:
    """The ``rel="ice-server"`` links in ``headers`` (each a ``Link`` field value), in order."""
    servers: list[RTCIceServer] = []
    for header in headers:
        at = 0
        while at < len(header):
            match = _VALUE.match(header, at)
            if match is None or match.end() == at:
                break  # the rest is not a link: what came before stands
            at = match.end()
            params: dict[str, str] = {}
            for param in _ONE_PARAM.finditer(match["params"]):
                quoted = param["quoted"]
                value = _ESCAPE.sub(r"\1", quoted) if quoted is not None else param["token"] or ""
                params.setdefault(param["name"].lower(), value)
            if "ice-server" not in params.get("rel", "").lower().split():
                continue
            servers.append(
                RTCIceServer(
                    urls=match["url"],
                    username=params.get("username"),
                    credential=params.get("credential"),
                )
            )
    return servers
