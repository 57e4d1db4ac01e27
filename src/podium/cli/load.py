"""``podium load``: rehearse a busy day against a server you run.

``join-storm`` sends a crowd of simulated listeners to one space
(:mod:`podium.clients.load`); ``flood`` sends junk and abusive requests
(:mod:`podium.clients.flood`). Both print a report (JSON with ``--json``) and exit with
status 1 when anything happened that the join contract does not explain, so a script can
gate on them. Plans out of bounds raise :class:`~podium.errors.ClientError`, which
``podium`` prints as one line. They run on uvloop: the generator's cost is mostly the
event loop's own, per request, and uvloop's is a fraction of asyncio's.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import uvloop

LOAD_EPILOG = (
    "Only the --server origin is contacted (join-storm: plus --allow-origin). Run it only"
    " against servers you operate."
)


def add_parser(commands: Any) -> None:
    """Add ``load`` and its actions to the ``podium`` command parser."""
    load = commands.add_parser(
        "load", help="load-test a server you run: a join storm, or a flood", epilog=LOAD_EPILOG
    )
    actions = load.add_subparsers(metavar="ACTION")

    storm = actions.add_parser(
        "join-storm",
        help="N listeners arrive over T seconds, join, listen and beacon",
        epilog=LOAD_EPILOG,
    )
    _target(storm)
    storm.add_argument("--listeners", type=int, required=True, metavar="N")
    storm.add_argument(
        "--over", type=float, required=True, metavar="SECONDS", help="arrivals spread evenly"
    )
    storm.add_argument(
        "--duration",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long each admitted listener listens (default 10)",
    )
    storm.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long a queued listener waits before leaving (default 60)",
    )
    storm.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="URL",
        help="another origin the join answers may send listeners to (an edge); repeatable",
    )
    storm.add_argument(
        "--ca-file",
        metavar="PEM",
        help="trust the certificate authorities in this file for https (a staging"
        " deployment's own CA); default: the system's",
    )
    storm.add_argument("--seed", type=int, help="seed of the backoff jitter")
    storm.set_defaults(handler=_join_storm)

    flood = actions.add_parser(
        "flood", help="junk and abusive requests at a given rate", epilog=LOAD_EPILOG
    )
    _target(flood)
    flood.add_argument("--rate", type=float, required=True, metavar="R", help="requests a second")
    flood.add_argument("--duration", type=float, required=True, metavar="SECONDS")
    flood.add_argument(
        "--concurrency", type=int, default=256, help="requests in flight at most (default 256)"
    )
    flood.set_defaults(handler=_flood)


def _target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="the server's URL, e.g. http://host:8080")
    parser.add_argument("--space", required=True, metavar="ID", help="the space id")
    parser.add_argument(
        "--source-network",
        metavar="CIDR",
        help="spread requests over these local source addresses (e.g. 127.0.0.0/16 on"
        " loopback), as a real crowd comes from many",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _print(args: argparse.Namespace, report: dict[str, Any], text: str) -> int:
    print(json.dumps(report, indent=2) if args.json else text)
    if report["unexplained_errors"]:
        print(
            f"podium: {report['unexplained_errors']} unexplained errors (see the report)",
            file=sys.stderr,
        )
        return 1
    return 0


def _join_storm(args: argparse.Namespace) -> int:
    from podium.clients.load import StormPlan, join_storm
    from podium.clients.loadreport import render_storm

    plan = StormPlan(
        server=args.server,
        space=args.space,
        listeners=args.listeners,
        over_s=args.over,
        duration_s=args.duration,
        max_wait_s=args.max_wait,
        source_network=args.source_network,
        allow=tuple(args.allow_origin),
        ca_file=args.ca_file,
        seed=args.seed,
    )
    plan.check()
    report = uvloop.run(join_storm(plan))
    return _print(args, report, render_storm(report))


def _flood(args: argparse.Namespace) -> int:
    from podium.clients.flood import FloodPlan, flood, render_flood

    plan = FloodPlan(
        server=args.server,
        space=args.space,
        rate=args.rate,
        duration_s=args.duration,
        concurrency=args.concurrency,
        source_network=args.source_network,
    )
    plan.check()
    report = uvloop.run(flood(plan))
    return _print(args, report, render_flood(report))


__all__ = ["add_parser"]
