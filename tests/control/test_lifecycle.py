"""The space lifecycle as a matrix: every (state, action, actor) gives a new state or a
clear refusal."""

from __future__ import annotations

import pytest

from podium.control.lifecycle import Action, Space, SpaceStatus, apply
from podium.errors import Forbidden, InvalidTransition


def space(status: SpaceStatus) -> Space:
    return Space("s1", "host", "Title", "", status, None, created_at=100.0)


ALLOWED = {
    (SpaceStatus.SCHEDULED, Action.START): SpaceStatus.LIVE,
    (SpaceStatus.LIVE, Action.END): SpaceStatus.ENDED,
    (SpaceStatus.SCHEDULED, Action.CANCEL): SpaceStatus.CANCELLED,
}


@pytest.mark.parametrize("status", list(SpaceStatus))
@pytest.mark.parametrize("action", list(Action))
def test_host_transitions(status: SpaceStatus, action: Action) -> None:
    before = space(status)
    target = ALLOWED.get((status, action))
    if target is None:
        with pytest.raises(InvalidTransition, match=f"cannot {action} this space"):
            apply(before, action, "host", 200.0)
    else:
        after = apply(before, action, "host", 200.0)
        assert after.status is target
        if target is SpaceStatus.LIVE:
            assert after.started_at == 200.0
            assert after.ended_at is None
        else:
            assert after.ended_at == 200.0


@pytest.mark.parametrize("status", list(SpaceStatus))
@pytest.mark.parametrize("action", list(Action))
def test_only_the_host_moves_a_space(status: SpaceStatus, action: Action) -> None:
    with pytest.raises(Forbidden, match="only the host"):
        apply(space(status), action, "someone-else", 200.0)


def test_refusals_say_what_to_do_instead() -> None:
    with pytest.raises(InvalidTransition, match="cancel it instead"):
        apply(space(SpaceStatus.SCHEDULED), Action.END, "host", 1.0)
    with pytest.raises(InvalidTransition, match="end it instead"):
        apply(space(SpaceStatus.LIVE), Action.CANCEL, "host", 1.0)
