"""The address an edge fetches from: a Podium origin, or a shield in front of one.

Edges speak plain HTTP to their upstream (TLS belongs at the edge, facing listeners). A
shield is just another cache with the same rules, so an edge in front of a shield is
generated exactly like one in front of the origin: only the address differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from podium.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Upstream:
    url: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """``http://host[:port]``; anything else is refused with a message that says why."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise InvalidInput(
                "the origin must be an http://host:port address (edges speak plain HTTP "
                "to their upstream; put TLS at the edge)"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidInput("the origin address must not have a path")
        try:
            port = parts.port or 80
        except ValueError as exc:
            raise InvalidInput(f"the origin address has a bad port: {url!r}") from exc
        return cls(url.rstrip("/"), parts.hostname, port)

    @property
    def authority(self) -> str:
        """``host:port``, with brackets around an IPv6 address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
