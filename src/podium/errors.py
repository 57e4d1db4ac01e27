"""The one exception tree of Podium.

Every error Podium raises on purpose is a :class:`PodiumError`. Lower-layer errors
(``sqlite3``, ``OSError``, ``httpx``) are translated at the boundary with ``raise ... from
exc`` so callers handle one family, and users see a clear message instead of a traceback::

    PodiumError
    ├── ConfigError            bad flag, environment variable or TOML value
    ├── StorageError           the data directory or database cannot be used
    ├── InvalidInput           a request that is well-formed HTTP but makes no sense
    ├── AuthError
    │   ├── Unauthenticated    no credentials, or bad, revoked or expired ones
    │   └── Forbidden          authenticated, but not allowed to do this
    ├── NotFound               no such object (or not visible to the caller)
    ├── Conflict               the object exists but is in the wrong state
    │   └── InvalidTransition  a space lifecycle step that is not allowed
    ├── RateLimited            too many attempts; carries ``retry_after`` seconds
    ├── Overloaded             no room now (a full queue, a node shedding load); retry later
    ├── ProofOfWorkRequired    solve the attached challenge, then ask again
    └── ClientError            the CLI could not talk to a server, or it said no

Each class carries the HTTP status and a problem-type slug used for RFC 9457 problem
details, so the web shell maps errors without a lookup table of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


class PodiumError(Exception):
    """Base of every error Podium raises on purpose."""

    status: int = 500
    kind: str = "internal"
    title: str = "Internal error"
    # Seconds after which trying again makes sense (sent as Retry-After), if known.
    retry_after: float | None = None
    # Members added to the problem document (RFC 9457 extensions), e.g. a machine-readable
    # ``reason``. Replaced per instance, never mutated.
    extra: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigError(PodiumError):
    status = 500
    kind = "config"
    title = "Configuration error"


class StorageError(PodiumError):
    status = 503
    kind = "storage-unavailable"
    title = "Storage unavailable"


class InvalidInput(PodiumError):
    status = 422
    kind = "invalid-input"
    title = "Invalid input"


class AuthError(PodiumError):
    pass


class Unauthenticated(AuthError):
    status = 401
    kind = "unauthenticated"
    title = "Authentication required"


class Forbidden(AuthError):
    status = 403
    kind = "forbidden"
    title = "Forbidden"


class NotFound(PodiumError):
    status = 404
    kind = "not-found"
    title = "Not found"


class Conflict(PodiumError):
    status = 409
    kind = "conflict"
    title = "Conflict"


class InvalidTransition(Conflict):
    kind = "invalid-transition"
    title = "Invalid state transition"


class RateLimited(PodiumError):
    status = 429
    kind = "rate-limited"
    title = "Too many requests"

    def __init__(
        self,
        detail: str,
        retry_after: float,
        reason: str = "rate_limited",
        scope: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        # ``scope`` says whose budget ran out, e.g. ``address``: the client address's.
        self.extra = {"reason": reason} if scope is None else {"reason": reason, "scope": scope}


class Overloaded(PodiumError):
    status = 503
    kind = "overloaded"
    title = "No room right now"

    def __init__(self, detail: str, retry_after: float, reason: str) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.extra = {"reason": reason}


class ProofOfWorkRequired(PodiumError):
    """HTTP 428 (RFC 6585): the request must carry a solved challenge, attached here."""

    status = 428
    kind = "proof-of-work-required"
    title = "Proof of work required"

    def __init__(self, detail: str, challenge: Mapping[str, Any]) -> None:
        super().__init__(detail)
        self.extra = {"reason": "proof_of_work", "challenge": dict(challenge)}


class ClientError(PodiumError):
    """Raised by the command-line clients; ``status`` is the server's, or 0 if unreachable."""

    kind = "client"
    title = "Request failed"

    def __init__(self, detail: str, status: int = 0) -> None:
        super().__init__(detail)
        self.status = status
