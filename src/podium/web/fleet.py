"""The operator's view of the fleet: ``GET /api/v1/admin/fleet`` (administrators only).

Every node in the registry, with its role, address, health and load, and the spaces it
holds rooms for; read from Redis by whichever node answers. A node on its own (no
``redis_url``) lists itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from podium import clock
from podium.control.fleet import Node
from podium.errors import Forbidden, StorageError
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


def _node(node: Node, now: float) -> dict[str, Any]:
    return {
        "id": node.id,
        "role": node.role,
        "url": node.url,
        "started_at": clock.rfc3339(node.started_at),
        "seen_s_ago": round(max(0.0, now - node.seen_at), 1),
        "load": node.load,
    }


@router.get("/fleet", responses=_PROBLEM)
async def fleet(context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """The nodes of the fleet, as its registry shows them now."""
    if not user.is_admin:
        raise Forbidden("only an administrator may see the fleet")
    now = clock.now()
    shared = context.fleet
    if shared is None:
        here = Node("", "all", context.settings.base_url, now, now, node_load(context))
        return {"answered_by": "", "redis": None, "nodes": [_node(here, now)]}
    nodes = shared.nodes(now)
    if nodes is None:
        raise StorageError(f"the fleet's registry cannot be read: {shared.problem}")
    return {
        "answered_by": shared.node_id,
        "redis": "ok",
        "nodes": [_node(node, now) for node in nodes],
    }
