"""The operator's view of the fleet: ``GET /api/v1/admin/fleet`` (administrators only).

Every node in the registry, with its role, address, health and load, and the spaces it
holds rooms for; read from Redis by whichever node answers. A node on its own (no
``redis_url``) lists itself.

``POST /api/v1/admin/fleet/nodes/{node}/drain`` drains a media node: it takes no more
spaces and hands those it has to other media nodes with no gap
(:mod:`podium.web.handover`); ``DELETE`` on the same URL cancels that. A media node that
starts again takes spaces again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from podium import clock
from podium.control import placement
from podium.control.accounts import User
from podium.control.fleet import Fleet, Node
from podium.errors import Conflict, Forbidden, NotFound, StorageError
from podium.web.auth import CurrentUser
from podium.web.context import Context, get_context

router = APIRouter(prefix="/api/v1/admin", tags=["operations"])
Ctx = Annotated[Context, Depends(get_context)]
_PROBLEM: dict[int | str, dict[str, Any]] = {
    code: {"content": {"application/problem+json": {}}} for code in (401, 403, 503)
}


def node_load(context: Context) -> dict[str, Any]:
    """What the registry shows of a node's load (its heartbeat sends this)."""
    now = clock.now()
    return {
        "healthy": context.gate.healthy,
        "joins_per_s": round(context.gate.arrivals_per_s(now), 2),
        "event_loop_lag_s": round(context.gate.health.lag_s, 4),
        "cpu": round(context.gate.health.cpu, 3),
        "rooms": sorted(context.hub.rooms()),
    }


_DRAIN_PROBLEM: dict[int | str, dict[str, Any]] = {
    code: {"content": {"application/problem+json": {}}} for code in (401, 403, 404, 409, 503)
}


def _node(
    node: Node, now: float, draining: dict[str, float], spaces: list[str] | None = None
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": node.id,
        "role": node.role,
        "url": node.url,
        "started_at": clock.rfc3339(node.started_at),
        "seen_s_ago": round(max(0.0, now - node.seen_at), 1),
        "load": node.load,
    }
    if node.role == "media":
        # The spaces it holds the lease of: those it speaks for now.
        view["spaces"] = spaces or []
        view["draining"] = node.id in draining
        if node.id in draining:
            view["draining_since"] = clock.rfc3339(draining[node.id])
    return view


def _admin_fleet(context: Context, user: User, what: str) -> Fleet:
    if not user.is_admin:
        raise Forbidden(f"only an administrator may {what}")
    if context.fleet is None:
        raise Conflict("this node is on its own (no redis_url): there is no fleet")
    return context.fleet


@router.get("/fleet", responses=_PROBLEM)
async def fleet(context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """The nodes of the fleet, as its registry shows them now."""
    if not user.is_admin:
        raise Forbidden("only an administrator may see the fleet")
    now = clock.now()
    shared = context.fleet
    if shared is None:
        here = Node("", "all", context.settings.base_url, now, now, node_load(context))
        return {"answered_by": "", "redis": None, "nodes": [_node(here, now, {})]}
    nodes = shared.nodes(now)
    draining = shared.draining()
    if nodes is None or draining is None:
        raise StorageError(f"the fleet's registry cannot be read: {shared.problem}")
    return {
        "answered_by": shared.node_id,
        "redis": "ok",
        "nodes": [
            _node(node, now, draining, placement.leased(shared, node.id) or [])
            if node.role == "media"
            else _node(node, now, draining)
            for node in nodes
        ],
    }


@router.post("/fleet/nodes/{node_id}/drain", status_code=202, responses=_DRAIN_PROBLEM)
async def drain(node_id: str, context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Drain a media node: no new space goes to it, and it hands each of its spaces to
    another media node, with no gap. Answers at once, with the spaces it has now; the
    fleet's view shows them leave."""
    shared = _admin_fleet(context, user, "drain a node")
    now = clock.now()
    nodes = shared.nodes(now)
    if nodes is None:
        raise StorageError(f"the fleet's registry cannot be read: {shared.problem}")
    node = next((n for n in nodes if n.id == node_id), None)
    if node is None:
        raise NotFound(f"no node named {node_id!r} is in the fleet")
    if node.role != "media":
        raise Conflict(
            f"{node_id} is a {node.role} node: only media nodes hold spaces; take a web node"
            " out at the load balancer"
        )
    others = [n for n in placement.candidates(shared, nodes) if n.node != node_id]
    if not others:
        raise Conflict(f"no other media node could take the spaces of {node_id}")
    if not shared.drain(node_id, now):
        raise StorageError(f"the fleet's registry cannot be written: {shared.problem}")
    return {"node": node_id, "draining": True, "spaces": placement.leased(shared, node_id) or []}


@router.delete("/fleet/nodes/{node_id}/drain", responses=_DRAIN_PROBLEM)
async def undrain(node_id: str, context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Cancel a drain: the node takes spaces again (those it handed over stay where they
    went)."""
    shared = _admin_fleet(context, user, "drain a node")
    if not shared.undrain(node_id):
        raise StorageError(f"the fleet's registry cannot be written: {shared.problem}")
    return {"node": node_id, "draining": False}
