"""``podium``: run a server, and manage accounts, tokens and spaces on one.

Exit status: 0 on success, 1 when the server refused or could not be reached, 2 for a
command-line mistake. Errors are one line on standard error, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from podium import __version__
from podium.cli import load as load_cli
from podium.cli import verify as verify_cli
from podium.clients.api import ApiClient, Credential
from podium.errors import ClientError, InvalidInput, PodiumError

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_TOKEN_FILE = Path("podium-data") / "owner.token"

Handler = Callable[[argparse.Namespace], int]

_TOKEN_FILE_HELP = (
    "file holding your API token (env PODIUM_TOKEN_FILE, or the token itself in"
    f" PODIUM_TOKEN; default {DEFAULT_TOKEN_FILE} when it exists)"
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        sys.exit(2)
    try:
        sys.exit(handler(args))
    except PodiumError as exc:
        print(f"podium: error: {exc.detail}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podium", description="Live audio spaces: run a server and manage it."
    )
    parser.add_argument("--version", action="version", version=f"podium {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the whole platform on this machine")
    serve.add_argument("--config", type=Path, help="TOML settings file")
    serve.add_argument(
        "--data", dest="data_dir", type=Path, help="data directory (default ./podium-data)"
    )
    serve.add_argument(
        "--database-url",
        metavar="URL",
        help="shared PostgreSQL (postgresql://…) for a fleet; default the embedded SQLite file",
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        help="shared Redis (redis://…) for a fleet: node registry, fleet-wide limits",
    )
    serve.add_argument("--node-name", help="this node's name in the fleet (default host:port)")
    serve.add_argument(
        "--role",
        choices=["all", "web", "media"],
        help="all (default: one machine), web (follows the media nodes) or media",
    )
    serve.add_argument(
        "--media-url",
        metavar="URL",
        help="a media node a web node follows from the start (it finds others in the registry)",
    )
    serve.add_argument(
        "--internal-url",
        metavar="URL",
        help="where the rest of the fleet reaches this node (default: a media node's"
        " http://host:port, a web node's public URL)",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks one)")
    serve.add_argument("--public-url", help="the URL people use to reach this server")
    serve.add_argument("--log-format", choices=["json", "human"], help="default json")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--demo",
        action="store_true",
        default=None,
        help="run a live demo space with a speaker looping a recording",
    )
    serve.add_argument(
        "--max-listeners", type=int, metavar="N", help="listeners at once per space (0: no limit)"
    )
    serve.add_argument(
        "--max-join-rate",
        type=float,
        metavar="R",
        help="joins admitted per second per space (0: no limit); beyond, a waiting room",
    )
    serve.add_argument(
        "--join-pow", choices=["auto", "on", "off"], help="proof of work on joining (auto)"
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate", help="upgrade the database's schema to this version's (run once per deploy)"
    )
    migrate.add_argument("--config", type=Path, help="TOML settings file (as for serve)")
    migrate.add_argument(
        "--data", dest="data_dir", type=Path, help="data directory (default ./podium-data)"
    )
    migrate.add_argument(
        "--database-url", metavar="URL", help="the database (default the embedded SQLite file)"
    )
    migrate.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 0 if the schema is current, 3 if it needs upgrading",
    )
    migrate.set_defaults(handler=_migrate)

    user = commands.add_parser("user", help="accounts").add_subparsers(metavar="ACTION")
    add = user.add_parser("add", help="create an account (needs an administrator's token)")
    add.add_argument("handle")
    add.add_argument("--display-name", default="")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else prompt on a terminal)",
    )
    add.add_argument(
        "--no-password", action="store_true", help="an account that uses API tokens only"
    )
    _client_options(add)
    add.set_defaults(handler=_user_add)
    me = user.add_parser("me", help="show the account your token belongs to")
    _client_options(me)
    me.set_defaults(handler=_user_me)

    token = commands.add_parser("token", help="API tokens").add_subparsers(metavar="ACTION")
    create = token.add_parser("create", help="issue an API token")
    create.add_argument("--name", default="cli")
    create.add_argument("--handle", help="sign in as HANDLE (password from a prompt or stdin)")
    create.add_argument("--password-stdin", action="store_true")
    create.add_argument("--out", type=Path, help="write the token to this file (mode 0600)")
    _client_options(create)
    create.set_defaults(handler=_token_create)
    listing = token.add_parser("list", help="your tokens")
    _client_options(listing)
    listing.set_defaults(handler=_token_list)
    revoke = token.add_parser("revoke", help="revoke one of your tokens")
    revoke.add_argument("token_id")
    _client_options(revoke)
    revoke.set_defaults(handler=_token_revoke)

    speak = commands.add_parser("speak", help="publish a WAV file or a tone over WHIP")
    speak.add_argument("whip_url", metavar="WHIP_URL")
    speak.add_argument("--token", help="API token (or --token-file, or env PODIUM_TOKEN)")
    speak.add_argument("--token-file", type=Path, help=_TOKEN_FILE_HELP)
    source = speak.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="audio file (WAV or anything FFmpeg reads)")
    source.add_argument("--tone", type=float, metavar="HZ", help="a sine tone instead")
    speak.add_argument("--loop", action="store_true", help="start the file over at its end")
    speak.add_argument("--seconds", type=float, help="stop after this long")
    speak.add_argument("--json", action="store_true", help="print the report as JSON")
    speak.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="give up when the session is lost, instead of publishing again with a backoff",
    )
    speak.set_defaults(handler=_speak)

    listen = commands.add_parser("listen", help="follow a live (or replay) HLS playlist")
    listen.add_argument(
        "playlist_url", metavar="PLAYLIST_URL", nargs="?", help="any HLS playlist (or --space)"
    )
    listen.add_argument(
        "--space",
        metavar="ID",
        help="join this space on --server first (waiting room, proof of work, beacons)",
    )
    listen.add_argument(
        "--server",
        default=os.environ.get("PODIUM_SERVER", DEFAULT_SERVER),
        help=f"with --space: the Podium server (env PODIUM_SERVER; default {DEFAULT_SERVER})",
    )
    listen.add_argument("--seconds", type=float, default=10.0, help="how long (default 10)")
    listen.add_argument("--out", type=Path, help="write what was heard to this WAV file")
    listen.add_argument(
        "--from-start", action="store_true", help="start at the beginning instead of the live edge"
    )
    listen.add_argument("--json", action="store_true", help="print the report as JSON")
    listen.set_defaults(handler=_listen)
    load_cli.add_parser(commands)
    verify_cli.add_parser(commands)

    admission = commands.add_parser(
        "admission", help="admission on a node: limits, load shedding, proof of work (admin)"
    )
    admission.add_argument(
        "--pow", choices=["auto", "on", "off"], help="switch proof of work on joining now"
    )
    _client_options(admission)
    admission.set_defaults(handler=_admission)

    fleet = commands.add_parser("fleet", help="the nodes of a fleet (admin)").add_subparsers(
        metavar="ACTION"
    )
    fleet_status = fleet.add_parser(
        "status", help="every node: its role, address, health, load and the spaces on it"
    )
    _client_options(fleet_status)
    fleet_status.set_defaults(handler=_fleet_status)
    fleet_drain = fleet.add_parser(
        "drain",
        help="move a media node's spaces to the others with no gap, before stopping it",
        description="Drain a media node: it takes no new space and hands each of its live"
        " spaces to another media node on the program's own clock (no gap in the program or"
        " the recording; speakers publish again by themselves). Waits until the node holds"
        " none, then says it can be stopped. A node that starts again takes spaces again.",
    )
    fleet_drain.add_argument("node", help="the media node's name (as `podium fleet status` shows)")
    fleet_drain.add_argument(
        "--cancel", action="store_true", help="cancel a drain: the node takes spaces again"
    )
    fleet_drain.add_argument(
        "--no-wait", action="store_true", help="ask for the drain and return at once"
    )
    fleet_drain.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the node to hold no space (default 300)",
    )
    _client_options(fleet_drain)
    fleet_drain.set_defaults(handler=_fleet_drain)

    edge = commands.add_parser("edge-config", help="print an edge cache configuration")
    edge.add_argument(
        "kind", choices=["varnish", "nginx"], help="the edge server (Varnish VCL 4.1, nginx)"
    )
    edge.add_argument(
        "--origin",
        required=True,
        help="the upstream's http://host:port: the origin, or a shield in front of it",
    )
    edge.add_argument("--listen", help="nginx: the listen address (default 80)")
    edge.add_argument(
        "--cache-dir",
        type=Path,
        help="nginx: the cache directory (default /var/cache/nginx/podium)",
    )
    edge.set_defaults(handler=_edge_config)

    balancer = commands.add_parser(
        "lb-config", help="print a load balancer configuration for a fleet's web nodes"
    )
    balancer.add_argument("kind", choices=["haproxy"], help="the load balancer (HAProxy 2.6)")
    balancer.add_argument(
        "--node",
        action="append",
        required=True,
        metavar="URL",
        help="a web node's http://host:port (repeat for each)",
    )
    balancer.add_argument("--listen", help="the bind address (default :80)")
    balancer.add_argument(
        "--admin-socket", help="the runtime API socket, for draining (default /run/haproxy/…)"
    )
    balancer.add_argument(
        "--maxconn", type=int, help="connections at once (default 100000; 2 fds each)"
    )
    balancer.set_defaults(handler=_lb_config)

    capacity = commands.add_parser(
        "capacity", help="edges, web nodes, Redis and PostgreSQL for N listeners"
    )
    capacity.add_argument("--listeners", type=int, required=True, help="concurrent listeners")
    capacity.add_argument(
        "--part-ms", type=float, default=256.0, help="LL-HLS part duration (default 256)"
    )
    capacity.add_argument("--bitrate", default="64k", help="audio bitrate (default 64k)")
    capacity.add_argument("--edge-cores", type=int, default=16, help="cores per edge (16)")
    capacity.add_argument("--edge-gbps", type=float, default=10.0, help="Gbit/s per edge (10)")
    capacity.add_argument(
        "--utilisation", type=float, default=0.6, help="plan edges to this load (0.6)"
    )
    capacity.add_argument(
        "--join-window",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="the listeners all arrive within this (default 600)",
    )
    capacity.add_argument("--web-cores", type=int, default=8, help="cores per web node (8)")
    capacity.add_argument("--json", action="store_true", help="print the plan as JSON")
    capacity.set_defaults(handler=_capacity)

    room = commands.add_parser("room", help="the stage, hands, invites and numbers of a space")
    rooms = room.add_subparsers(metavar="ACTION")
    for action, text in (
        ("state", "the room state: stage, who is talking, hands, audience, status"),
        ("hands", "the queue of raised hands (hosts and co-hosts)"),
        ("invite", "an invite link to speak (hosts and co-hosts)"),
        ("audit", "the moderation log (the host)"),
        ("analytics", "audience figures and the per-minute series"),
    ):
        one = rooms.add_parser(action, help=text)
        one.add_argument("space_id", metavar="ID")
        _client_options(one)
        one.set_defaults(handler=_room_read, action=action)
    join = rooms.add_parser("join", help="join as a guest listener: prints a ticket")
    join.add_argument("space_id", metavar="ID")
    _client_options(join)
    join.set_defaults(handler=_room_join)
    for action, text in (
        ("approve", "bring a raised hand on stage"),
        ("decline", "decline a raised hand"),
        ("move-to-audience", "move a speaker back to the audience"),
        ("mute", "mute a speaker"),
        ("remove", "remove someone from the space and block them"),
        ("unblock", "let a removed person back"),
        ("make-cohost", "make a speaker a co-host (the host)"),
        ("demote", "make a co-host a speaker again (the host)"),
    ):
        one = rooms.add_parser(action, help=text)
        one.add_argument("space_id", metavar="ID")
        one.add_argument("person", metavar="PERSON", help="as listed by state or hands")
        _client_options(one)
        one.set_defaults(handler=_room_moderate, action=action)

    space = commands.add_parser("space", help="spaces").add_subparsers(metavar="ACTION")
    new = space.add_parser("create", help="create a space you host")
    new.add_argument("--title", required=True)
    new.add_argument("--description", default="")
    new.add_argument(
        "--scheduled-start",
        type=_utc_time,
        help="when it is due to start, e.g. 2026-12-01T18:00:00Z",
    )
    _client_options(new)
    new.set_defaults(handler=_space_create)
    spaces = space.add_parser("list", help="list spaces")
    spaces.add_argument("--status", choices=["live", "scheduled", "ended", "cancelled"])
    _client_options(spaces)
    spaces.set_defaults(handler=_space_list)
    for action, text in (
        ("get", "show a space"),
        ("start", "go live"),
        ("end", "end a live space"),
        ("cancel", "cancel a space that has not started"),
    ):
        one = space.add_parser(action, help=text)
        one.add_argument("space_id", metavar="ID")
        _client_options(one)
        one.set_defaults(handler=_space_action, action=action)
    return parser


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("PODIUM_SERVER", DEFAULT_SERVER),
        help=f"Podium server URL (env PODIUM_SERVER; default {DEFAULT_SERVER})",
    )
    parser.add_argument("--token-file", type=Path, help=_TOKEN_FILE_HELP)
    parser.add_argument("--json", action="store_true", help="print JSON")


def _utc_time(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError("give a UTC offset, e.g. 2026-12-01T18:00:00Z")
    return moment.isoformat()


def _credential(args: argparse.Namespace) -> Credential | None:
    """The API token to send, and where it came from: ``--token-file``, then
    ``PODIUM_TOKEN``, then ``PODIUM_TOKEN_FILE``, then the default token file if there is
    one. A file named by the user that cannot be read is an error; a missing default file
    just means no token."""
    path: Path | None = args.token_file
    if path is not None:
        return Credential(_read_token(path), f"--token-file {path}")
    if env := os.environ.get("PODIUM_TOKEN", "").strip():
        return Credential(env, "PODIUM_TOKEN")
    if named := os.environ.get("PODIUM_TOKEN_FILE"):
        return Credential(_read_token(Path(named)), f"PODIUM_TOKEN_FILE ({named})")
    try:
        token = DEFAULT_TOKEN_FILE.read_text().strip()
    except OSError:
        return None
    return Credential(token, str(DEFAULT_TOKEN_FILE), default=True) if token else None


def _read_token(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ClientError(
            f"cannot read the token file {path} ({exc.strerror}); pass --token-file"
        ) from exc


def _client(args: argparse.Namespace, auth: str = "required") -> ApiClient:
    """A client for ``--server``. ``auth``: ``required`` (say so if there is none) or
    ``none``: never sent, for reads anyone may make and for signing in with a password,
    so that a token nobody asked for cannot turn them into a refusal."""
    credential = None if auth == "none" else _credential(args)
    if credential is None and auth == "required":
        raise ClientError(
            f"no API token: pass --token-file FILE, or set PODIUM_TOKEN_FILE or PODIUM_TOKEN"
            f" (the default, {DEFAULT_TOKEN_FILE}, is not here)"
        )
    return ApiClient(args.server, credential)


def _emit(args: argparse.Namespace, document: Any, text: str) -> int:
    print(json.dumps(document, indent=2) if args.json else text)
    return 0


def _password(args: argparse.Namespace, confirm: bool) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise ClientError("no terminal to ask for a password; use --password-stdin")
    first = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Again: ") != first:
        raise ClientError("the passwords differ")
    return first


# -- handlers ----------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from podium import logs, server
    from podium.config import load_settings

    flags = {
        name: getattr(args, name)
        for name in (
            *("data_dir", "database_url", "redis_url", "node_name", "role", "media_url"),
            "internal_url",
            *("host", "port", "public_url"),
            *("log_format", "log_level", "demo"),
            *("max_listeners", "max_join_rate", "join_pow"),
        )
    }
    settings = load_settings(flags, config_file=args.config)
    logs.configure(settings.log_format, settings.log_level)

    def started(info: server.Started) -> None:
        print(f"Podium is listening on {info.listen_url}", flush=True)
        if info.url != info.listen_url:
            print(f"Public address: {info.url}", flush=True)
        if info.owner_created:
            print(
                f"Created the owner account; its API token is in {info.owner_token_file}",
                flush=True,
            )
        else:
            print(f"The owner's API token is in {info.owner_token_file}", flush=True)
        if info.demo_page:
            print(f"Demo space (live): {info.demo_page}", flush=True)
        print(f"API docs: {info.url}/docs  ·  stop with Ctrl-C", flush=True)

    server.serve(settings, started)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from podium.config import load_settings
    from podium.control.db import Database, database_url

    flags = {"data_dir": args.data_dir, "database_url": args.database_url}
    settings = load_settings(flags, config_file=args.config)
    if not settings.database_url:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    db = Database(database_url(settings.database_url, settings.data_dir))
    try:
        if args.check:
            state = db.schema()
            shown = "empty" if state.current is None else f"at revision {state.current}"
            if state.up_to_date:
                print(f"{db.description}: {shown}, the newest")
                return 0
            print(f"{db.description}: {shown}; `podium migrate` brings it to {state.head}")
            return 3
        before, after = db.upgrade()
    finally:
        db.close()
    if before.up_to_date:
        print(f"{db.description}: already at revision {after.current}, the newest")
    else:
        was = "empty" if before.current is None else f"revision {before.current}"
        if before.legacy:
            was += " (as an older Podium numbered it)"
        print(f"{db.description}: upgraded from {was} to revision {after.current}")
    return 0


def _user_add(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"handle": args.handle, "display_name": args.display_name}
    if not args.no_password:
        body["password"] = _password(args, confirm=True)
    with _client(args) as api:
        user = api.call("POST", "/users", body)
    return _emit(args, user, f"created @{user['handle']} ({user['id']})")


def _admission(args: argparse.Namespace) -> int:
    with _client(args) as api:
        if args.pow:
            view = api.call("PATCH", "/admin/admission", {"join_pow": args.pow})
        else:
            view = api.call("GET", "/admin/admission")
    state = "shedding new joins" if view["shedding"] else "admitting"
    pow_now = "required now" if view["proof_of_work_now"] else "not required now"
    text = (
        f"{state} (event-loop lag {view['event_loop_lag_s'] * 1000:.0f} ms,"
        f" CPU {view['cpu'] * 100:.0f} %); joins arriving {view['arrivals_per_s']}/s\n"
        f"proof of work: {view['join_pow']} ({pow_now})\n"
        f"limits per space: listeners {view['max_listeners'] or 'unlimited'},"
        f" join rate {view['max_join_rate'] or 'unlimited'}/s\n"
        + "".join(f"queue {space}: {n} waiting\n" for space, n in view["queues"].items())
    )
    return _emit(args, view, text.rstrip("\n"))


def _fleet_status(args: argparse.Namespace) -> int:
    with _client(args) as api:
        view = api.call("GET", "/admin/fleet")
    lines = [f"{len(view['nodes'])} node(s); Redis: {view['redis'] or 'none (a node on its own)'}"]
    for node in view["nodes"]:
        load = node["load"]
        health = "healthy" if load.get("healthy") else "shedding new joins"
        rooms = ", ".join(load.get("rooms", [])) or "none"
        media = load.get("media_rooms")
        running = "unknown" if media is None else ", ".join(media) or "none"
        lines.append(
            f"{node['id'] or '(this node)'}  {node['role']}  {node['url']}  {health},"
            f" joins {load.get('joins_per_s', 0)}/s, CPU {load.get('cpu', 0) * 100:.0f} %,"
            f" seen {node['seen_s_ago']} s ago; rooms: {rooms}; media runs: {running}"
        )
    return _emit(args, view, "\n".join(lines))


def _fleet_drain(args: argparse.Namespace) -> int:
    path = f"/admin/fleet/nodes/{quote(args.node, safe='')}/drain"
    with _client(args) as api:
        if args.cancel:
            answer = api.call("DELETE", path)
            return _emit(args, answer, f"{args.node} takes spaces again")
        answer = api.call("POST", path)
        left: list[str] = list(answer["spaces"])
        if not args.json:
            print(f"draining {args.node}: {len(left)} live space(s) to move", flush=True)
        if args.no_wait:
            return _emit(args, answer, f"{args.node} is draining") if args.json else 0
        moved: dict[str, str] = {}
        deadline = time.monotonic() + args.timeout
        while True:
            view = api.call("GET", "/admin/fleet")
            held = {node["id"]: node.get("spaces", []) for node in view["nodes"]}
            left = list(held.get(args.node, []))
            for space in sorted(set(answer["spaces"]) - set(left) - set(moved)):
                to = next((n for n, spaces in held.items() if space in spaces), "?")
                moved[space] = to
                if not args.json:
                    print(f"moved {space} to {to}", flush=True)
            if not left:
                document = {"node": args.node, "moved": moved, "left": []}
                return _emit(args, document, f"{args.node} holds no space now: it can be stopped")
            if args.node not in held:
                raise ClientError(f"{args.node} left the fleet still holding {', '.join(left)}")
            if time.monotonic() > deadline:
                raise ClientError(
                    f"{args.node} still holds {', '.join(left)} after {args.timeout:g} s;"
                    " see its log (drain_* events)"
                )
            time.sleep(1.0)


def _user_me(args: argparse.Namespace) -> int:
    with _client(args) as api:
        user = api.call("GET", "/me")
    return _emit(args, user, f"@{user['handle']} {user['display_name']}")


def _token_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.handle:
        body["handle"] = args.handle
        body["password"] = _password(args, confirm=False)
    with _client(args, "none" if args.handle else "required") as api:
        issued = api.call("POST", "/tokens", body)
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(issued["token"] + "\n")
        shown = dict(issued, token=f"(written to {args.out})")
        return _emit(args, shown, f"token {issued['id']} written to {args.out}")
    return _emit(args, issued, issued["token"])


def _token_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        tokens = api.call("GET", "/tokens")["tokens"]
    lines = [
        f"{t['id']}  {t['name']:<20} created {t['created_at']}"
        + (f"  REVOKED {t['revoked_at']}" if t["revoked_at"] else "")
        for t in tokens
    ]
    return _emit(args, tokens, "\n".join(lines) or "no tokens")


def _token_revoke(args: argparse.Namespace) -> int:
    with _client(args) as api:
        api.call("DELETE", f"/tokens/{args.token_id}")
    return _emit(args, {"revoked": args.token_id}, f"revoked {args.token_id}")


def _speak(args: argparse.Namespace) -> int:
    from podium import logs
    from podium.clients.speak import AudioSource, ToneSource, WavSource, speak

    credential = None if args.token else _credential(args)
    token = args.token or (credential.token if credential else "")
    source: AudioSource = (
        ToneSource(args.tone) if args.tone is not None else WavSource(args.file, loop=args.loop)
    )
    if args.seconds is None and args.tone is not None:
        print("speaking until Ctrl-C", file=sys.stderr)
    logs.configure("human", "warning")  # a lost session, and each try to publish again
    try:
        report = asyncio.run(
            speak(args.whip_url, token, source, seconds=args.seconds, reconnect=args.reconnect)
        )
    except ClientError as exc:
        if exc.status == 401 and credential is not None:
            raise credential.refused(exc.detail, "--token, --token-file FILE") from exc
        raise
    document = dataclasses.asdict(report)
    return _emit(
        args,
        document,
        f"spoke {report.samples_sent / 48000:.1f} s to {report.resource_url}"
        + ("" if report.connected else " (media never connected)")
        + (f" in {report.sessions} sessions" if report.sessions > 1 else ""),
    )


def _listen(args: argparse.Namespace) -> int:
    from podium.clients.listen import listen

    if (args.playlist_url is None) == (args.space is None):
        raise ClientError("give a PLAYLIST_URL, or --space ID to join a space first")
    if args.space is None:
        report = asyncio.run(
            listen(
                args.playlist_url,
                seconds=args.seconds,
                out_wav=args.out,
                from_start=args.from_start,
            )
        )
        document = dataclasses.asdict(report)
    else:
        entry, report = asyncio.run(_join_and_listen(args))
        document = {"join": dataclasses.asdict(entry), **dataclasses.asdict(report)}
    lines = [
        f"heard {report.seconds:.1f} s in {report.parts} parts and {report.segments} segments"
        + (" (the space has ended)" if report.ended else ""),
        f"stalls: {report.stalls} ({report.stall_seconds:.2f} s)",
        f"time to first audio: {_seconds(report.time_to_first_audio)}",
        f"behind live: p50 {_seconds(report.playback_latency_p50)},"
        f" p95 {_seconds(report.playback_latency_p95)}",
    ]
    if args.out:
        lines.append(f"wrote {args.out}")
    return _emit(args, document, "\n".join(lines))


async def _join_and_listen(args: argparse.Namespace) -> tuple[Any, Any]:
    """Join the space (queue, proof of work, backoff), then listen while beaconing."""
    import httpx

    from podium.clients.entry import enter, send_beacons
    from podium.clients.listen import listen

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    async with httpx.AsyncClient(timeout=30) as http:
        entry = await enter(http, args.server, args.space, on_progress=progress)
        admitted = entry.admitted
        if admitted.replay:
            progress("the space has ended: listening to the replay")
        beacons = asyncio.create_task(send_beacons(http, args.server, args.space, admitted))
        try:
            report = await listen(
                admitted.playlist_url,
                seconds=args.seconds,
                out_wav=args.out,
                from_start=args.from_start or admitted.replay,
            )
        finally:
            beacons.cancel()
    return entry, report


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


_ROOM_PATHS = {
    "state": "/state",
    "hands": "/hands",
    "audit": "/audit",
    "analytics": "/analytics",
}


def _edge_config(args: argparse.Namespace) -> int:
    from podium.edge import nginx, varnish

    if args.kind == "nginx":
        listen = args.listen or nginx.DEFAULT_LISTEN
        cache_dir = args.cache_dir or nginx.DEFAULT_CACHE_DIR
        print(nginx.render(args.origin, listen=listen, cache_dir=cache_dir), end="")
    elif args.listen or args.cache_dir:
        raise InvalidInput("--listen and --cache-dir are for nginx (varnishd takes -a and -s)")
    else:
        print(varnish.render(args.origin), end="")
    return 0


def _lb_config(args: argparse.Namespace) -> int:
    from podium.edge import haproxy

    print(
        haproxy.render(
            args.node,
            listen=args.listen or haproxy.DEFAULT_LISTEN,
            socket=args.admin_socket or haproxy.DEFAULT_SOCKET,
            maxconn=haproxy.DEFAULT_MAXCONN if args.maxconn is None else args.maxconn,
        ),
        end="",
    )
    return 0


def _capacity(args: argparse.Namespace) -> int:
    from podium.edge import capacity, fleetcapacity

    assumptions = capacity.Assumptions(
        edge_cores=args.edge_cores, edge_gbps=args.edge_gbps, utilisation=args.utilisation
    )
    result = capacity.plan(
        args.listeners, args.part_ms, capacity.parse_bitrate(args.bitrate), assumptions
    )
    fleet = fleetcapacity.plan_fleet(
        args.listeners,
        fleetcapacity.FleetAssumptions(
            join_window_s=args.join_window,
            web_cores=args.web_cores,
            utilisation=args.utilisation,
        ),
    )
    if args.json:
        print(json.dumps({**result.to_json(), "fleet": fleet.to_json()}, indent=2))
    else:
        print(capacity.render(result) + "\n" + fleetcapacity.render_fleet(fleet), end="")
    return 0


def _room_read(args: argparse.Namespace) -> int:
    base = f"/spaces/{args.space_id}"
    with _client(args, "none" if args.action == "state" else "required") as api:
        if args.action == "invite":
            document = api.call("POST", f"{base}/invites")
            return _emit(args, document, f"{document['url']}  (until {document['expires_at']})")
        document = api.call("GET", base + _ROOM_PATHS[args.action])
    return _emit(args, document, _room_text(args.action, document))


def _room_text(action: str, document: dict[str, Any]) -> str:
    if action == "state":
        stage = ", ".join(
            f"{s['name']} ({s['role']}{', muted' if s['muted'] else ''}"
            f"{', talking' if s['talking'] else ''}) [{s['person']}]"
            for s in document["stage"]
        )
        audience = document["audience"]
        return (
            f"{document['title']}: {document['status']}, recording {document['recording']}\n"
            f"stage: {stage}\nhands raised: {document['hands']['count']}\n"
            f"listening now: {audience['concurrent']}, peak {audience['peak']},"
            f" unique {audience['unique']}"
        )
    if action == "hands":
        return (
            "\n".join(f"{h['position']:>3}. {h['name']} [{h['person']}]" for h in document["hands"])
            or "no hands raised"
        )
    if action == "audit":
        return (
            "\n".join(
                f"{e['at']}  {e['actor']} {e['action']} {e['target']} {e['detail']}".rstrip()
                for e in document["entries"]
            )
            or "nothing yet"
        )
    return (
        f"now {document['concurrent']}, peak {document['peak']}, unique {document['unique']},"
        f" replay plays {document['replay_plays']}"
        + "".join(
            f"\n{m['start']}  max {m['concurrent_max']:>6}  joins {m['joins']:>6}"
            f"  reactions {m['reactions']:>6}"
            for m in document["minutes"]
        )
    )


def _room_join(args: argparse.Namespace) -> int:
    # A guest listener, whatever token is around: the ticket is what identifies them.
    with ApiClient(args.server) as api:
        joined = api.call("POST", f"/spaces/{args.space_id}/join")
    return _emit(args, joined, joined["ticket"])


def _room_moderate(args: argparse.Namespace) -> int:
    with _client(args) as api:
        if args.action == "unmute":
            answer = api.call("POST", f"/spaces/{args.space_id}/stage/me/unmute", {})
        else:
            answer = api.call("POST", f"/spaces/{args.space_id}/stage/{args.person}/{args.action}")
    return _emit(args, answer, f"{args.action}: done")


def _space_line(space: dict[str, Any]) -> str:
    return f"{space['id']}  {space['status']:<9}  {space['title']}  {space['page_url']}"


def _space_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"title": args.title, "description": args.description}
    if args.scheduled_start:
        body["scheduled_start"] = args.scheduled_start
    with _client(args) as api:
        space = api.call("POST", "/spaces", body)
    return _emit(args, space, _space_line(space))


def _space_list(args: argparse.Namespace) -> int:
    params = {"status": args.status} if args.status else None
    with _client(args, "none") as api:
        spaces = api.call("GET", "/spaces", params=params)["spaces"]
    return _emit(args, spaces, "\n".join(_space_line(s) for s in spaces) or "no spaces")


def _space_action(args: argparse.Namespace) -> int:
    with _client(args, "none" if args.action == "get" else "required") as api:
        if args.action == "get":
            space = api.call("GET", f"/spaces/{args.space_id}")
        else:
            space = api.call("POST", f"/spaces/{args.space_id}/{args.action}")
    return _emit(args, space, _space_line(space))
