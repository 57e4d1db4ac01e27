"""The operator's view of admission on this node, and the switch for proof of work.

``GET /api/v1/admin/admission`` says what the node is doing now: the limits, whether it
is shedding new joins and why (event-loop lag, CPU), how fast joins arrive, and whether
joining needs a proof of work. ``PATCH`` with ``{"join_pow": "on"}`` switches proof of
work on at once (under attack), ``"auto"`` back to the pressure rule, ``"off"`` never.
Administrators only. The switch lasts until the server restarts (the setting
``join_pow`` is the lasting choice).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from podium import clock
from podium.config import PowMode
from podium.control.accounts import User
from podium.errors import Forbidden
from podium.web.auth import CurrentUser
from podium.web.context import Context, get_context
from podium.web.schemas import Request as StrictBody

router = APIRouter(prefix="/api/v1/admin", tags=["operations"])
Ctx = Annotated[Context, Depends(get_context)]
log = logging.getLogger("podium.admission")
_PROBLEM: dict[int | str, dict[str, Any]] = {
    code: {"content": {"application/problem+json": {}}} for code in (401, 403, 422)
}


class AdmissionChange(StrictBody):
    join_pow: PowMode


def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("only an administrator may see or change admission")


def _view(context: Context) -> dict[str, Any]:
    gate = context.gate
    now = clock.now()
    return {
        "join_pow": gate.pow_mode,
        "proof_of_work_now": gate.pow_required(now),
        "pow_above_joins_per_s": gate.pow_above,
        "arrivals_per_s": round(gate.arrivals_per_s(now), 2),
        "shedding": not gate.healthy,
        "event_loop_lag_s": round(gate.health.lag_s, 4),
        "cpu": round(gate.health.cpu, 3),
        "max_listeners": gate.limits.max_listeners,
        "max_join_rate": gate.limits.max_join_rate,
        "queues": {space_id: a.waiting_count() for space_id, a in gate.spaces()},
    }


@router.get("/admission", responses=_PROBLEM)
async def admission(context: Ctx, user: CurrentUser) -> dict[str, Any]:
    """Admission on this node now."""
    _require_admin(user)
    return _view(context)


@router.patch("/admission", responses=_PROBLEM)
async def change_admission(
    body: AdmissionChange, context: Ctx, user: CurrentUser
) -> dict[str, Any]:
    """Switch proof of work on joining: on (under attack), auto, or off."""
    _require_admin(user)
    context.gate.pow_mode = body.join_pow
    log.warning("join_pow_switched", extra={"fields": {"mode": body.join_pow, "by": user.handle}})
    return _view(context)
