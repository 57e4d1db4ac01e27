"""Room life as a matrix: every (action, actor, target) gives a new stage, no change, or a
clear refusal; then capacity, the hand queue, blocking, muting, versions and JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from podium.control.stage import (
    MAX_COHOSTS,
    MAX_HANDS,
    MAX_NAME,
    MAX_ON_STAGE,
    AuditEntry,
    Outcome,
    Role,
    Seat,
    Stage,
    StageAction,
)
from podium.errors import Conflict, Forbidden, InvalidInput, NotFound, PodiumError

NOW = 500.0

# One room with every kind of person in it. Names are the ids capitalised.
ACTORS = {
    "host": "hana",
    "cohost": "cato",  # one of two co-hosts
    "speaker": "sami",
    "listener": "lou",  # in the audience, no hand, unknown to the stage
    "hand": "lena",  # second in the hand queue
    "blocked": "bo",  # removed earlier
}
TARGETS = {
    "host": "hana",
    "cohost": "cleo",  # the co-host who is never the actor
    "speaker": "sora",
    "hand": "lia",  # first in the hand queue
    "blocked": "bea",  # removed earlier, never the actor
}
ON_STAGE = {"host", "cohost", "speaker"}
MODERATORS = {"host", "cohost"}


def room() -> Stage:
    """Built through the public API, so the fixture itself exercises it."""
    stage = Stage.new("hana", "Hana")
    for person in ("cato", "cleo", "sami", "sora"):
        stage, _ = stage.accept_invite(person, person.title(), 1.0)
    for person in ("cato", "cleo"):
        stage, _ = stage.make_cohost("hana", person, 2.0)
    stage, _ = stage.raise_hand("lia", "Lia", 3.0)
    stage, _ = stage.raise_hand("lena", "Lena", 4.0)
    for person in ("bo", "bea"):
        stage, _ = stage.remove("hana", person, 5.0)
    return stage


def muted_by_host(stage: Stage) -> Stage:
    seats = tuple(dataclasses.replace(s, muted=True, muted_by_host=True) for s in stage.seats)
    return dataclasses.replace(stage, seats=seats)


# --- what the product spec says should happen --------------------------------------------

OK = "ok"
SAME = "unchanged"
Expect = str | tuple[type[PodiumError], str]


def expect_moderation(action: str, actor: str, target: str) -> Expect:
    """The rules, written from the spec, for actions with an actor and a target.

    ``actor`` and ``target`` are kinds (keys of ACTORS / TARGETS, or "self")."""
    # The host is the one target kind that can also be the actor.
    self_ = target == "self" or ACTORS[actor] == TARGETS[target]
    kind = actor if self_ else target  # what the target person is
    mod = actor in MODERATORS
    co_on_co = actor == "cohost" and kind == "cohost"
    if action == "approve":
        if not mod:
            return Forbidden, "only the host and co-hosts can approve requests to speak"
        if self_:
            return Forbidden, "you cannot approve yourself"
        if kind == "blocked":
            return Forbidden, "was removed from this space and cannot be approved"
        if kind in ON_STAGE:
            return Conflict, "is already on the stage"
        return OK
    if action == "decline":
        if not mod:
            return Forbidden, "only the host and co-hosts can decline requests to speak"
        if self_:
            return Forbidden, "you cannot decline yourself"
        return OK if kind == "hand" else (NotFound, "has not raised a hand")
    if action == "move_to_audience":
        if not mod:
            return Forbidden, "only the host and co-hosts can move people to the audience"
        if self_:
            return Forbidden, "you cannot move yourself to the audience; leave the stage"
        if kind not in ON_STAGE:
            return NotFound, "is not on the stage"
        if kind == "host":
            return Forbidden, "a co-host cannot move the host to the audience"
        if co_on_co:
            return Forbidden, "cannot move another co-host .* only the host acts on co-hosts"
        return OK
    if action == "mute":
        if self_:
            if kind == "blocked":
                return Forbidden, "was removed from this space and cannot mute"
            return OK if kind in ON_STAGE else (NotFound, "is not on the stage")
        if not mod:
            return Forbidden, "only the host and co-hosts can mute others"
        if kind not in ON_STAGE:
            return NotFound, "is not on the stage"
        if kind == "host":
            return Forbidden, "a co-host cannot mute the host"
        if co_on_co:
            return Forbidden, "a co-host cannot mute another co-host; only the host acts"
        return OK
    if action == "unmute":  # run on a room where every seat is muted by a moderator
        if not self_:
            return Forbidden, "only a speaker can unmute themself"
        if kind == "blocked":
            return Forbidden, "was removed from this space and cannot unmute"
        return OK if kind in ON_STAGE else (NotFound, "is not on the stage")
    if action == "remove":
        if not mod:
            return Forbidden, "only the host and co-hosts can remove people"
        if self_:
            return Forbidden, "you cannot remove yourself"
        if kind == "host":
            return Forbidden, "a co-host cannot remove the host"
        if co_on_co:
            return Forbidden, "a co-host cannot remove another co-host; only the host acts"
        return SAME if kind == "blocked" else OK
    if action == "unblock":
        if actor != "host":
            return Forbidden, "only the host can unblock removed people"
        if self_:
            return Forbidden, "you cannot unblock yourself"
        return OK if kind == "blocked" else SAME
    if action == "make_cohost":
        if actor != "host":
            return Forbidden, "only the host can make co-hosts"
        if self_:
            return Forbidden, "you cannot make yourself a co-host"
        if kind not in ON_STAGE:
            return NotFound, "is not on the stage"
        if kind == "cohost":
            return SAME
        # The room already has both co-hosts; the allowed path is tested below.
        return Conflict, f"there are already {MAX_COHOSTS} co-hosts"
    if action == "demote":
        if actor != "host":
            return Forbidden, "only the host can demote co-hosts"
        if self_:
            return Forbidden, "you cannot demote yourself"
        if kind not in ON_STAGE:
            return NotFound, "is not on the stage"
        return OK if kind == "cohost" else (Conflict, "is not a co-host")
    raise AssertionError(action)


def expect_own(action: str, actor: str) -> Expect:
    """The rules for what people do for themselves."""
    if action == "raise_hand":
        if actor in ON_STAGE:
            return Conflict, "is already on the stage"
        if actor == "blocked":
            return Forbidden, "was removed from this space and cannot raise a hand"
        return SAME if actor == "hand" else OK
    if action == "lower_hand":
        return OK if actor == "hand" else SAME
    if action == "accept_invite":
        if actor in ON_STAGE:
            return SAME
        if actor == "blocked":
            return Forbidden, "was removed from this space and cannot accept an invitation"
        return OK
    if action == "leave":
        if actor == "host":
            return Forbidden, "the host cannot leave the stage; end the space instead"
        return OK if actor in ON_STAGE else SAME
    raise AssertionError(action)


def effect(action: str, actor: str, person: str) -> Callable[[Stage, Stage], None]:
    """What an allowed action does to its target (everyone else is checked unchanged)."""

    def check(before: Stage, after: Stage) -> None:
        seat = after.seat(person)
        if action in {"approve", "accept_invite"}:
            assert seat is not None
            assert seat.role is Role.SPEAKER
            assert not seat.muted
            assert seat.name == person.title()
            assert after.hand_position(person) is None
        elif action in {"decline", "lower_hand"}:
            assert after.hand_position(person) is None
            assert seat is None
        elif action == "raise_hand":
            assert after.hand_position(person) == len(before.hands) + 1
            assert after.hands[-1].raised_at == NOW
        elif action in {"move_to_audience", "leave"}:
            assert seat is None
            assert not after.is_blocked(person)
        elif action == "mute":
            assert seat is not None
            assert seat.muted
            assert seat.muted_by_host is (actor != person)
        elif action == "unmute":
            assert seat is not None
            assert not seat.muted
            assert not seat.muted_by_host
        elif action == "remove":
            assert seat is None
            assert after.hand_position(person) is None
            assert after.is_blocked(person)
        elif action == "unblock":
            assert not after.is_blocked(person)
        elif action == "demote":
            assert seat is not None
            assert seat.role is Role.SPEAKER
        else:
            raise AssertionError(action)

    return check


def run(stage: Stage, action: str, actor: str, person: str) -> Outcome:
    if action in {"raise_hand", "accept_invite"}:
        method: Callable[..., Outcome] = getattr(stage, action)
        return method(person, person.title(), NOW)
    if action in {"lower_hand", "leave"}:
        method = getattr(stage, action)
        return method(person, NOW)
    method = getattr(stage, action)
    return method(actor, person, NOW)


def check_case(stage: Stage, action: str, actor: str, person: str, want: Expect) -> None:
    if isinstance(want, tuple):
        error, pattern = want
        with pytest.raises(error, match=pattern):
            run(stage, action, actor, person)
        return
    after, entry = run(stage, action, actor, person)
    assert entry.at == NOW
    assert entry.actor == actor
    assert entry.action is StageAction(action)
    assert entry.target == person
    if want == SAME:
        assert after is stage
        assert entry.detail.startswith("unchanged")
        return
    assert after.version == stage.version + 1
    assert not entry.detail.startswith("unchanged")
    effect(action, actor, person)(stage, after)
    # Nobody else moved.
    assert [s for s in after.seats if s.person != person] == [
        s for s in stage.seats if s.person != person
    ]
    assert [h for h in after.hands if h.person != person] == [
        h for h in stage.hands if h.person != person
    ]
    assert after.blocked - {person} == stage.blocked - {person}
    assert after.host == stage.host


MODERATION = [
    "approve",
    "decline",
    "move_to_audience",
    "mute",
    "unmute",
    "remove",
    "unblock",
    "make_cohost",
    "demote",
]
OWN = ["raise_hand", "lower_hand", "accept_invite", "leave"]


@pytest.mark.parametrize("target", [*TARGETS, "self"])
@pytest.mark.parametrize("actor", list(ACTORS))
@pytest.mark.parametrize("action", MODERATION)
def test_moderation_matrix(action: str, actor: str, target: str) -> None:
    stage = room()
    if action == "unmute":
        stage = muted_by_host(stage)
    who = ACTORS[actor]
    person = who if target == "self" else TARGETS[target]
    check_case(stage, action, who, person, expect_moderation(action, actor, target))


@pytest.mark.parametrize("actor", list(ACTORS))
@pytest.mark.parametrize("action", OWN)
def test_own_actions_matrix(action: str, actor: str) -> None:
    who = ACTORS[actor]
    check_case(room(), action, who, who, expect_own(action, actor))


def test_the_matrix_covers_every_action() -> None:
    assert {*MODERATION, *OWN} == {str(a) for a in StageAction}


# --- capacity ----------------------------------------------------------------------------


def test_the_stage_holds_thirteen_including_host_and_cohosts() -> None:
    stage = Stage.new("h", "Host")
    stage, _ = stage.accept_invite("c1", "C1", 1.0)
    stage, _ = stage.accept_invite("c2", "C2", 1.0)
    stage, _ = stage.make_cohost("h", "c1", 1.0)
    stage, _ = stage.make_cohost("h", "c2", 1.0)
    for n in range(MAX_ON_STAGE - 3):
        stage, _ = stage.accept_invite(f"s{n}", f"S{n}", 2.0)
    assert len(stage.seats) == MAX_ON_STAGE == 13
    with pytest.raises(Conflict, match=r"^the stage is full \(13\)$"):
        stage.accept_invite("late", "Late", 3.0)
    stage, _ = stage.raise_hand("eager", "Eager", 3.0)
    with pytest.raises(Conflict, match=r"the stage is full \(13\)"):
        stage.approve("c1", "eager", 4.0)
    assert stage.hand_position("eager") == 1  # a refused approval keeps the hand up
    stage, _ = stage.leave("s0", 5.0)
    stage, _ = stage.approve("c1", "eager", 6.0)
    assert stage.role_of("eager") is Role.SPEAKER


def test_at_most_two_cohosts_and_demoting_frees_a_place() -> None:
    stage = Stage.new("h", "Host")
    for person in ("a", "b", "c"):
        stage, _ = stage.accept_invite(person, person, 1.0)
    stage, _ = stage.make_cohost("h", "a", 2.0)
    stage, entry = stage.make_cohost("h", "b", 2.0)
    assert entry == AuditEntry(2.0, "h", StageAction.MAKE_COHOST, "b")
    assert stage.role_of("b") is Role.COHOST
    with pytest.raises(Conflict, match="there are already 2 co-hosts; demote one first"):
        stage.make_cohost("h", "c", 3.0)
    stage, _ = stage.demote("h", "a", 4.0)
    assert stage.role_of("a") is Role.SPEAKER
    stage, _ = stage.make_cohost("h", "c", 5.0)
    assert [s.role for s in stage.seats] == [Role.HOST, Role.SPEAKER, Role.COHOST, Role.COHOST]


def test_a_cohost_moved_to_the_audience_loses_the_role() -> None:
    stage = room()
    stage, entry = stage.move_to_audience("hana", "cleo", NOW)
    assert entry.detail == "cohost"
    stage, _ = stage.accept_invite("cleo", "Cleo", NOW)
    assert stage.role_of("cleo") is Role.SPEAKER


# --- the hand queue ----------------------------------------------------------------------


def test_hands_queue_in_arrival_order_and_raising_twice_keeps_the_place() -> None:
    stage = Stage.new("h", "Host")
    for at, person in enumerate(("x", "y", "z")):
        stage, _ = stage.raise_hand(person, person.upper(), float(at))
    again, entry = stage.raise_hand("x", "Other Name", 9.0)
    assert again is stage
    assert entry.detail == "unchanged: hand already up"
    assert [(h.person, h.name, h.raised_at) for h in stage.hands] == [
        ("x", "X", 0.0),
        ("y", "Y", 1.0),
        ("z", "Z", 2.0),
    ]
    stage, _ = stage.lower_hand("y", 10.0)
    assert [stage.hand_position(p) for p in ("x", "y", "z")] == [1, None, 2]
    stage, _ = stage.raise_hand("y", "Y", 11.0)
    assert stage.hand_position("y") == 3  # a lowered hand goes to the back


def test_a_full_hand_queue_answers_conflict() -> None:
    stage = Stage.new("h", "Host")
    for n in range(MAX_HANDS):
        stage, _ = stage.raise_hand(f"p{n}", "P", float(n))
    assert len(stage.hands) == MAX_HANDS == 1000
    with pytest.raises(Conflict, match=r"the queue of raised hands is full \(1000\)"):
        stage.raise_hand("late", "Late", 2000.0)
    same, _ = stage.raise_hand("p7", "P", 2000.0)  # still idempotent when full
    assert same is stage


# --- removal -----------------------------------------------------------------------------


def test_a_removed_person_cannot_come_back_until_the_host_unblocks() -> None:
    stage = room()
    stage, entry = stage.remove("cato", "sora", NOW)
    assert entry == AuditEntry(NOW, "cato", StageAction.REMOVE, "sora", "speaker")
    assert not stage.can_publish("sora")
    with pytest.raises(Forbidden, match="removed"):
        stage.raise_hand("sora", "Sora", NOW)
    with pytest.raises(Forbidden, match="removed"):
        stage.accept_invite("sora", "Sora", NOW)
    with pytest.raises(Forbidden, match="cannot be approved"):
        stage.approve("hana", "sora", NOW)
    with pytest.raises(Forbidden, match=r"removed .* cannot unmute"):
        stage.unmute("sora", "sora", NOW)
    with pytest.raises(Forbidden, match="only the host can unblock"):
        stage.unblock("cato", "sora", NOW)
    stage, _ = stage.unblock("hana", "sora", NOW)
    stage, _ = stage.raise_hand("sora", "Sora", NOW)
    assert stage.hand_position("sora") == 3


def test_removing_a_hand_drops_it_and_any_listener_can_be_removed() -> None:
    stage = room()
    stage, entry = stage.remove("cleo", "lia", NOW)
    assert entry.detail == "listener"
    assert stage.hand_position("lena") == 1
    stage, _ = stage.remove("cleo", "stranger", NOW)  # never seen by the stage
    assert stage.is_blocked("stranger")


# --- muting ------------------------------------------------------------------------------


def test_mute_rules() -> None:
    stage = room()
    stage, entry = stage.mute("sami", "sami", 1.0)
    assert entry.detail == "self"
    assert stage.seat("sami") == Seat("sami", "Sami", Role.SPEAKER, True, False)
    same, _ = stage.mute("sami", "sami", 2.0)
    assert same is stage
    # A moderator's mute of a self-muted speaker is recorded as the moderator's.
    stage, entry = stage.mute("cato", "sami", 3.0)
    assert entry.detail == "by host"
    assert stage.seat("sami") == Seat("sami", "Sami", Role.SPEAKER, True, True)
    same, _ = stage.mute("hana", "sami", 4.0)
    assert same is stage
    # "the speaker can unmute themself unless removed" — and only they can.
    with pytest.raises(Forbidden, match="nobody can open another person's microphone"):
        stage.unmute("hana", "sami", 5.0)
    assert stage.can_publish("sami")  # muted is not removed
    stage, _ = stage.unmute("sami", "sami", 6.0)
    assert stage.seat("sami") == Seat("sami", "Sami", Role.SPEAKER, False, False)
    same, entry = stage.unmute("sami", "sami", 7.0)
    assert same is stage
    assert entry.detail == "unchanged: not muted"
    # The host may mute co-hosts; a co-host only speakers.
    stage, _ = stage.mute("hana", "cato", 8.0)
    assert stage.seat("cato") == Seat("cato", "Cato", Role.COHOST, True, True)


def test_can_publish() -> None:
    stage = room()
    assert [stage.can_publish(p) for p in ("hana", "cato", "sami", "lia", "lou", "bo")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert stage.role_of("lia") is None


# --- versions, audit and names ----------------------------------------------------------


def test_every_change_bumps_the_version_by_one_and_is_audited() -> None:
    stage = Stage.new("h", "Host")
    assert stage.version == 0
    steps: list[Callable[[Stage], Outcome]] = [
        lambda s: s.raise_hand("a", "A", 1.0),
        lambda s: s.approve("h", "a", 2.0),
        lambda s: s.make_cohost("h", "a", 3.0),
        lambda s: s.raise_hand("b", "B", 4.0),
        lambda s: s.decline("a", "b", 5.0),
        lambda s: s.accept_invite("b", "B", 6.0),
        lambda s: s.mute("a", "b", 7.0),
        lambda s: s.unmute("b", "b", 8.0),
        lambda s: s.move_to_audience("a", "b", 9.0),
        lambda s: s.remove("a", "b", 10.0),
        lambda s: s.unblock("h", "b", 11.0),
        lambda s: s.demote("h", "a", 12.0),
        lambda s: s.leave("a", 13.0),
    ]
    entries = []
    for n, step in enumerate(steps, start=1):
        stage, entry = step(stage)
        assert stage.version == n
        entries.append(entry)
    assert [(e.at, e.action) for e in entries] == [
        (1.0, "raise_hand"),
        (2.0, "approve"),
        (3.0, "make_cohost"),
        (4.0, "raise_hand"),
        (5.0, "decline"),
        (6.0, "accept_invite"),
        (7.0, "mute"),
        (8.0, "unmute"),
        (9.0, "move_to_audience"),
        (10.0, "remove"),
        (11.0, "unblock"),
        (12.0, "demote"),
        (13.0, "leave"),
    ]
    assert stage == Stage(host="h", seats=(Seat("h", "Host", Role.HOST),), version=13)


def test_refusals_leave_the_stage_untouched() -> None:
    stage = room()
    before = stage.to_json()
    with pytest.raises(Forbidden):
        stage.remove("cato", "hana", NOW)
    assert stage.to_json() == before


def test_names_are_tidied_and_ids_checked() -> None:
    stage, _ = Stage.new("h", "Host").raise_hand("p", "  Ann \n  Lee ", 1.0)
    assert stage.hands[0].name == "Ann Lee"
    stage, _ = stage.accept_invite("q", "x" * 500, 1.0)
    seat = stage.seat("q")
    assert seat is not None
    assert seat.name == "x" * MAX_NAME
    with pytest.raises(InvalidInput, match="a display name is required"):
        stage.raise_hand("r", "   ", 1.0)
    with pytest.raises(InvalidInput, match="a person id is 1 to 128 characters"):
        stage.raise_hand("", "R", 1.0)
    with pytest.raises(InvalidInput, match="person id"):
        Stage.new("h" * 129, "Host")


# --- JSON --------------------------------------------------------------------------------


def test_json_round_trip_is_exact() -> None:
    stage = room()
    stage, _ = stage.mute("hana", "sora", 0.1 + 0.2)
    stage, _ = stage.mute("sami", "sami", 1e-9)
    stage, _ = stage.raise_hand("émile", "Émile 🎤", 1_700_000_000.123456)
    text = json.dumps(stage.to_json())
    back = Stage.from_json(json.loads(text))
    assert back == stage
    assert back.hands[-1].raised_at == 1_700_000_000.123456
    assert json.dumps(back.to_json()) == text
    assert Stage.from_json(Stage.new("h", "H").to_json()) == Stage.new("h", "H")


def test_audit_entry_round_trip() -> None:
    _, entry = room().remove("hana", "sora", 0.1 + 0.2)
    assert AuditEntry.from_json(json.loads(json.dumps(entry.to_json()))) == entry
    with pytest.raises(InvalidInput, match="unknown action 'explode'"):
        AuditEntry.from_json({**entry.to_json(), "action": "explode"})


def _edit(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = room().to_json()
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        (_edit(lambda d: d.update(schema=2)), "schema 2, expected 1"),
        (_edit(lambda d: d.pop("hands")), "missing 'hands'"),
        (_edit(lambda d: d.update(version="3")), "'version' must be an integer"),
        (_edit(lambda d: d.update(version=True)), "'version' must be an integer"),
        (_edit(lambda d: d["seats"][1].update(role="king")), "unknown role 'king'"),
        (_edit(lambda d: d["seats"][1].update(role="host")), "exactly one seat"),
        (_edit(lambda d: d.update(host="cato")), "exactly one seat"),
        (_edit(lambda d: d["seats"][3].update(role="cohost")), "more than 2 co-hosts"),
        (_edit(lambda d: d["seats"][1].update(muted="yes")), "'muted' must be true or false"),
        (_edit(lambda d: d["hands"].append(d["hands"][0])), "two seats or two hands"),
        (_edit(lambda d: d["blocked"].append("sami")), "removed one a seat"),
        (_edit(lambda d: d["blocked"].append(7)), "'blocked' must hold strings"),
        (_edit(lambda d: d.update(seats=[*d["seats"], 1])), "missing 'role'"),
        (
            _edit(
                lambda d: d["seats"].extend(
                    {"person": f"x{n}", "name": "X", "role": "speaker", "muted": False}
                    | {"muted_by_host": False}
                    for n in range(9)
                )
            ),
            "more than 13 on the stage",
        ),
    ],
)
def test_malformed_documents_are_refused(doc: dict[str, Any], pattern: str) -> None:
    with pytest.raises(InvalidInput, match=pattern):
        Stage.from_json(doc)
