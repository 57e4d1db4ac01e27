"""Settings for ``podium serve``, with the usual precedence.

A value comes from the first of these that sets it: a command-line flag, an environment
variable ``PODIUM_<NAME>`` (upper case), a TOML file given with ``--config``, the default.
Secrets are wrapped in :class:`Secret` so that no log line or ``repr`` can show them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from podium.errors import ConfigError

LogFormat = Literal["json", "human"]
LogLevel = Literal["debug", "info", "warning", "error"]
PowMode = Literal["auto", "on", "off"]
Role = Literal["all", "web", "media"]


@dataclass(frozen=True, slots=True)
class Secret:
    """A string that never shows itself in ``repr``, ``str`` or a log line."""

    value: str = dataclasses.field(repr=False)

    def __str__(self) -> str:
        return "**********"

    def __repr__(self) -> str:
        return "Secret('**********')"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything ``podium serve`` can be told. Field names are the TOML keys."""

    data_dir: Path = Path("podium-data")
    # The control plane's database. Empty: the embedded SQLite file in data_dir. For a
    # fleet, one PostgreSQL that every node shares: postgresql://user:password@host/name.
    # Kept out of repr: it may carry a password.
    database_url: str = dataclasses.field(default="", repr=False)
    # Shared ephemeral state for a fleet (the node registry, fleet-wide rate limits):
    # redis://host:6379/0. Empty: everything in this process. Kept out of repr too.
    redis_url: str = dataclasses.field(default="", repr=False)
    # How this node is named in the registry, `podium fleet status` and /metrics
    # (default: host name and port).
    node_name: str = ""
    # What this node does in a fleet: "all" (one machine: web and media), "web" (API,
    # pages, joins, room state and the origin, fed parts by the media nodes) or "media"
    # (runs rooms: speakers, mixing, recording; web nodes follow every media node they
    # find in the registry, at the public_url each one registers).
    role: Role = "all"
    # For a web node: a media node's URL (http://media-host:8080), followed from the
    # start; the others are found in the registry. Optional.
    media_url: str = ""
    # For a media node: the URL the fleet's web nodes reach it at (its internal API and
    # recordings), registered for them to find. Default: http://host:port as it listens
    # (the machine's name in place of a wildcard address).
    internal_url: str = ""
    # For a media node: how many cores it offers to rooms (0: the cores it may run on).
    # Placement gives a node rooms in proportion.
    media_cores: float = 0.0
    # The shared secret web nodes and the media node authenticate each other with.
    media_secret: Secret | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # The address people use to reach this server (behind a proxy or CDN it differs from
    # host:port); links such as a space's page_url are built from it.
    public_url: str = ""
    log_format: LogFormat = "json"
    log_level: LogLevel = "info"
    # Largest request body the API accepts; SDP offers and JSON documents are far smaller.
    max_body_bytes: int = 64 * 1024
    session_ttl_s: int = 14 * 24 * 3600
    # Anyone may create an account (rate limited); when false only admins can add users.
    open_signup: bool = True
    # Sign-in attempts per client address and per handle: a burst, then this many a minute.
    signin_burst: int = 5
    signin_per_minute: float = 5.0
    # Key for signing tickets and invite links. When unset, one is generated on first
    # start and kept in <data_dir>/secret.key (mode 0600).
    secret_key: Secret | None = None
    # The key secret_key replaced, when rotating it: what it signed (tickets, invites,
    # queue places) is still accepted while new ones are signed with secret_key. Drop it
    # once they have expired (a day).
    previous_secret_key: Secret | None = None
    # Start (or keep) a live demo space with a speaker looping a bundled recording.
    demo: bool = False
    # Count the audience exactly (memory grows with it) instead of with HyperLogLog
    # sketches (fixed memory, about 0.8 % standard error). For tests and small servers.
    exact_audience: bool = False
    # Admission control, per space on this node (0 = no limit): at most this many
    # listeners at once, admitted at most this many a second; beyond, a waiting room.
    max_listeners: int = 0
    max_join_rate: float = 0.0
    # New joins per client address: a burst, then this many a second (a household or an
    # office shares one address, so generous).
    join_burst: int = 200
    join_per_second: float = 20.0
    # Every other listener write (beacons, reactions, hands, stage requests) per client
    # address, on top of each ticket's own limits.
    listener_writes_burst: int = 1000
    listener_writes_per_second: float = 100.0
    # Proof of work on joining: "auto" asks for it when arrivals on this node exceed
    # pow_above_joins_per_s; "on" always; "off" never. Difficulty in leading zero bits
    # (16 is well under a second in a browser), one more bit per doubling of pressure.
    join_pow: PowMode = "auto"
    pow_above_joins_per_s: float = 200.0
    pow_difficulty: int = 16
    # The node sheds new joins (they queue) when its event loop runs this late or its
    # CPU (percent of one core) stays this high, before the people already in notice.
    shed_loop_lag_ms: int = 250
    shed_cpu_percent: int = 95
    # Edge caches and proxies in front of this server (comma-separated addresses or
    # networks): per-address limits then use the address they forward in
    # X-Forwarded-For, not theirs.
    trusted_proxies: str = ""
    # A request must send its headers, and then its body, within this many seconds.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    # The longest a room-state request with ?after=N is held waiting for a change.
    long_poll_s: float = 20.0
    # STUN and TURN servers that speakers' clients reach the media through, from behind
    # NAT or a firewall: comma-separated stun:, turn: and turns: URLs (RFC 7064, 7065),
    # e.g. "stun:turn.example.net, turn:turn.example.net?transport=udp,
    # turns:turn.example.net:443?transport=tcp". Advertised to WHIP clients as Link
    # headers (RFC 9725) and used by the web page. TURN URLs need turn_secret.
    ice_servers: str = ""
    # The TURN server's shared secret (coturn: use-auth-secret, static-auth-secret; 32
    # characters or more): each speaker is given TURN credentials of their own, made from
    # it and valid for turn_credentials_ttl_s, never a fixed password.
    turn_secret: Secret | None = dataclasses.field(default=None, repr=False)
    turn_credentials_ttl_s: int = 24 * 3600
    # For a machine behind 1:1 NAT (most cloud VMs), the public address the world reaches
    # it at: offered to speakers' clients beside the machine's own addresses, with the
    # same UDP ports. Empty: the machine's own addresses only.
    public_address: str = ""

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def fleet_url(self) -> str:
        """Where the rest of the fleet reaches this node: its internal URL if set, else a
        media node's own address and any other node's base URL."""
        if self.internal_url:
            return self.internal_url.rstrip("/")
        if self.role != "media":
            return self.base_url
        host = socket.getfqdn() if self.host in ("0.0.0.0", "::", "") else self.host  # noqa: S104
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = get_type_hints(Settings)
ENV_PREFIX = "PODIUM_"
# Settings that are comma-separated lists: a TOML file may give an array instead.
_LISTS = frozenset({"trusted_proxies", "ice_servers"})


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Merge defaults, a TOML file, the environment and flags (highest last).

    ``flags`` holds only the options given on the command line (``None`` means "not
    given"). Raises :class:`ConfigError` naming the source of any bad value.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file is not None:
        for name, raw in _read_toml(config_file).items():
            values[name] = _coerce(name, raw, f"{config_file}: {name}")
    for name in _FIELDS:
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            values[name] = _coerce(name, environ[env_name], f"environment {env_name}")
    for name, raw in flags.items():
        if raw is None:
            continue
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, raw, f"--{name.replace('_', '-')}")
    settings = Settings(**values)
    _check_proxies(settings.trusted_proxies)
    _check_ice_servers(settings)
    _check_role(settings)
    return settings


def _check_role(settings: Settings) -> None:
    """A web or media node is one of a fleet: it needs what the fleet shares."""
    if settings.role == "all":
        return
    missing = [
        name
        for name, value in (
            ("database_url", settings.database_url),
            ("redis_url", settings.redis_url),
            ("media_secret", settings.media_secret),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"role {settings.role} needs {', '.join(missing)} set")
    for name in ("media_url", "internal_url"):
        value = getattr(settings, name)
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: must be an http:// or https:// URL")


# RFC 7064 (stun:, stuns:) and RFC 7065 (turn:, turns:) URIs: a host (a name, an IPv4
# address or a bracketed IPv6 one), an optional port, and for TURN an optional transport.
_ICE_URL = re.compile(
    r"(?P<scheme>stuns?|turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


def ice_server_urls(text: str) -> list[str]:
    """The URLs of an ``ice_servers`` setting, in order."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _check_ice_servers(settings: Settings) -> None:
    for url in ice_server_urls(settings.ice_servers):
        match = _ICE_URL.fullmatch(url)
        if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
            raise ConfigError(
                f"ice_servers: {url!r} is not a STUN or TURN URL "
                "(stun:host[:port], turn:host[:port][?transport=udp|tcp], turns:...)"
            )
        if match["scheme"].startswith("stun") and match["transport"]:
            raise ConfigError(f"ice_servers: {url!r}: a STUN URL has no transport")
        if match["scheme"].startswith("turn") and settings.turn_secret is None:
            raise ConfigError(
                f"ice_servers: {url!r} is a TURN server: set turn_secret, the secret it "
                "shares with Podium (coturn's static-auth-secret)"
            )
    if settings.public_address:
        try:
            ipaddress.ip_address(settings.public_address)
        except ValueError as exc:
            raise ConfigError(
                f"public_address: {settings.public_address!r} is not an IP address"
            ) from exc
    if settings.turn_credentials_ttl_s < 60:
        raise ConfigError("turn_credentials_ttl_s: at least 60 seconds")


def _check_proxies(text: str) -> None:
    for item in text.split(","):
        if item.strip():
            try:
                ipaddress.ip_network(item.strip())
            except ValueError as exc:
                raise ConfigError(f"trusted_proxies: {item.strip()!r} is not an address") from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            document = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return document


def _coerce(name: str, raw: Any, source: str) -> Any:
    """Turn a TOML value, an environment string or a flag into the field's type."""
    hint = _HINTS[name]
    try:
        if hint is Path:
            return Path(str(raw))
        if hint is bool:
            return _to_bool(raw)
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError("not a whole number")
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise ValueError("not a number")
            return float(raw)
        if hint == (Secret | None):
            text = raw.value if isinstance(raw, Secret) else str(raw)
            if len(text) < 32:
                raise ValueError("must be at least 32 characters")
            return Secret(text)
        choices = get_args(hint)
        if choices:
            if raw not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}")
            return raw
        if name in _LISTS and isinstance(raw, list) and all(isinstance(i, str) for i in raw):
            return ", ".join(raw)  # a TOML array of them, as well as one string
        if not isinstance(raw, str):
            raise ValueError("not a string")
        return raw
    except ValueError as exc:
        hidden = {
            "secret_key",
            "previous_secret_key",
            "database_url",
            "redis_url",
            "media_secret",
            "turn_secret",
        }
        shown = "(secret)" if name in hidden else repr(raw)
        raise ConfigError(f"{source}: invalid value {shown}: {exc}") from exc


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("not a boolean (use true or false)")
