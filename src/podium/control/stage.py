"""Room life: who is on the stage, who has a hand up, who was removed — a pure state machine.

::

    audience ──raise_hand──► hand queue ──approve──► speaker ◄──make_cohost / demote──► co-host
    audience ──accept_invite──────────────────────► speaker
    hand queue ──lower_hand / decline──► audience
    speaker, co-host ──leave / move_to_audience──► audience
    anyone but the host ──remove──► blocked ──unblock──► audience

Roles. The *host* is the space's creator and is always on the stage; there is exactly one.
Up to :data:`MAX_COHOSTS` *co-hosts* and as many *speakers* share the stage, at most
:data:`MAX_ON_STAGE` people in all, host and co-hosts included. *Listeners* are everyone
else; they are not stored here unless they have a hand up or were blocked.

Who may do what (each refusal is a :class:`~podium.errors.Forbidden` naming its rule):

* The host and co-hosts *moderate*: approve or decline raised hands, move a speaker to the
  audience, mute someone on the stage, remove (and block) anyone.
* Only the host acts on co-hosts: a co-host cannot move, mute or remove the host or another
  co-host. The reason is that co-hosts are peers chosen by the host; letting peers act on
  each other would let one co-host silence the other without the host's say.
* Only the host makes a speaker a co-host, demotes a co-host, or unblocks a removed person.
  Undoing a removal takes the highest role so a co-host cannot undo the host's decision.
* Nobody acts on themself, except to leave the stage (anyone but the host, who ends the
  space instead — see :mod:`podium.control.lifecycle`), to mute or unmute, or to lower
  their own hand.
* Only a speaker unmutes themself. A moderator's mute is recorded (``muted_by_host``) but,
  as the spec says, "the speaker can unmute themself unless removed"; nobody can open
  another person's microphone.
* A removed person is blocked: off the stage, hand dropped, and they cannot raise a hand,
  accept an invitation or be approved until the host unblocks them.

Every action returns ``(stage, entry)``: the new :class:`Stage` and the
:class:`AuditEntry` the caller stores. A change bumps ``version`` by exactly one. Repeating
an idempotent action (raising a raised hand, muting a muted seat, leaving when not on the
stage, …) returns the *same* stage object, version unchanged, and an entry whose detail
starts with ``"unchanged"``: callers may skip the write, and the cached room state that
listeners fetch is not invalidated by client retries. Impossible actions raise
:class:`~podium.errors.NotFound` (no such seat or hand) or :class:`~podium.errors.Conflict`
(already on the stage; stage, co-hosts or queue full). Nothing here does I/O or reads a
clock: callers pass ``now``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from podium.errors import Conflict, Forbidden, InvalidInput, NotFound

MAX_ON_STAGE = 13
"""People on the stage, host and co-hosts included: a host and a dozen speakers."""
MAX_COHOSTS = 2
MAX_HANDS = 1000
"""Raised hands kept in the queue. Nobody reads past the first screenful; the bound keeps
the stage document (fetched by every listener) small when a crowd raises hands at once."""
MAX_BLOCKED = 10_000
"""Removed people remembered. Bounds the stored document; only moderators grow it."""
MAX_PERSON = 128
"""Longest person id accepted: ids are opaque, but stored and served to every listener."""
MAX_NAME = 64
"""Display names longer than this are clipped (a label, not an identity), not refused, so
an account whose display name is long can still speak."""
SCHEMA = 1
"""Version of the :meth:`Stage.to_json` document, so a later layout can read this one."""


_T = TypeVar("_T")


class Role(StrEnum):
    HOST = "host"
    COHOST = "cohost"
    SPEAKER = "speaker"


class StageAction(StrEnum):
    """What an :class:`AuditEntry` records; named as the :class:`Stage` methods are."""

    RAISE_HAND = "raise_hand"
    LOWER_HAND = "lower_hand"
    APPROVE = "approve"
    DECLINE = "decline"
    ACCEPT_INVITE = "accept_invite"
    MOVE_TO_AUDIENCE = "move_to_audience"
    LEAVE = "leave"
    MUTE = "mute"
    UNMUTE = "unmute"
    REMOVE = "remove"
    UNBLOCK = "unblock"
    MAKE_COHOST = "make_cohost"
    DEMOTE = "demote"


@dataclass(frozen=True, slots=True)
class Seat:
    """Someone on the stage. ``muted_by_host`` says a moderator muted them (shown in the
    room; cleared when they unmute themself)."""

    person: str
    name: str
    role: Role
    muted: bool = False
    muted_by_host: bool = False


@dataclass(frozen=True, slots=True)
class Hand:
    """A request to speak, kept in arrival order."""

    person: str
    name: str
    raised_at: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One moderation record: ``actor`` did ``action`` to ``target`` at ``at``."""

    at: float
    actor: str
    action: StageAction
    target: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "actor": self.actor,
            "action": str(self.action),
            "target": self.target,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Inverse of :meth:`to_json`; raises :class:`InvalidInput` on a malformed document."""
        action = _get(data, "action", str)
        try:
            kind = StageAction(action)
        except ValueError:
            raise InvalidInput(f"invalid audit entry: unknown action {action!r}") from None
        return cls(
            at=_get(data, "at", float),
            actor=_get(data, "actor", str),
            action=kind,
            target=_get(data, "target", str),
            detail=_get(data, "detail", str),
        )


Outcome = tuple["Stage", AuditEntry]


@dataclass(frozen=True, slots=True)
class Stage:
    """The stage of one space. Build it with :meth:`new` or :meth:`from_json`.

    Invariants (checked by :meth:`from_json`): exactly one seat is the host's and it is
    ``host``; at most :data:`MAX_ON_STAGE` seats and :data:`MAX_COHOSTS` co-hosts; nobody
    holds two seats or two hands; nobody on the stage has a hand; nobody blocked is on the
    stage or has a hand; the host is never blocked.
    """

    host: str
    seats: tuple[Seat, ...]
    hands: tuple[Hand, ...] = ()
    blocked: frozenset[str] = frozenset()
    version: int = 0

    @classmethod
    def new(cls, host: str, host_name: str) -> Stage:
        """A fresh stage with only the host on it (unmuted), version 0."""
        host = _person(host)
        return cls(host=host, seats=(Seat(host, _name(host_name), Role.HOST),))

    # --- queries -----------------------------------------------------------------------

    def seat(self, person: str) -> Seat | None:
        """``person``'s seat, or None if they are not on the stage."""
        for seat in self.seats:
            if seat.person == person:
                return seat
        return None

    def role_of(self, person: str) -> Role | None:
        """``person``'s role on the stage; None for a listener (including a blocked one)."""
        seat = self.seat(person)
        return None if seat is None else seat.role

    def can_publish(self, person: str) -> bool:
        """Whether ``person`` may send audio: they hold a seat. A removed person never does
        (removal takes the seat). A muted speaker may still publish: muting is applied by
        the mixer from :attr:`Seat.muted`, so unmuting needs no new connection."""
        return self.seat(person) is not None

    def hand_position(self, person: str) -> int | None:
        """1-based place of ``person``'s hand in the queue, or None if their hand is down."""
        for index, hand in enumerate(self.hands):
            if hand.person == person:
                return index + 1
        return None

    def is_blocked(self, person: str) -> bool:
        return person in self.blocked

    # --- the audience's own actions ------------------------------------------------------

    def raise_hand(self, person: str, name: str, now: float) -> Outcome:
        """Ask to speak; the hand joins the end of the queue.

        Raising a raised hand keeps its place (no change). Raises :class:`Forbidden` if
        ``person`` was removed, :class:`Conflict` if they are on the stage or the queue
        holds :data:`MAX_HANDS` hands.
        """
        person = _person(person)
        name = _name(name)
        self._refuse_blocked(person, "raise a hand")
        if self.seat(person) is not None:
            raise Conflict(f"{self._who(person)} is already on the stage")
        if self.hand_position(person) is not None:
            return self._unchanged(now, person, StageAction.RAISE_HAND, person, "hand already up")
        if len(self.hands) >= MAX_HANDS:
            raise Conflict(f"the queue of raised hands is full ({MAX_HANDS}); try again later")
        hands = (*self.hands, Hand(person, name, now))
        return self._next(now, person, StageAction.RAISE_HAND, person, hands=hands)

    def lower_hand(self, person: str, now: float) -> Outcome:
        """Withdraw one's own request to speak; no change if the hand is already down."""
        if self.hand_position(person) is None:
            return self._unchanged(now, person, StageAction.LOWER_HAND, person, "hand not up")
        return self._next(now, person, StageAction.LOWER_HAND, person, hands=self._drop(person))

    def accept_invite(self, person: str, name: str, now: float) -> Outcome:
        """Take a seat as a speaker by a host's invitation (verified by the caller).

        Drops ``person``'s raised hand, if any. No change if they are already on the stage
        (a retried accept). Raises :class:`Forbidden` if they were removed and
        :class:`Conflict` if the stage is full.
        """
        person = _person(person)
        name = _name(name)
        self._refuse_blocked(person, "accept an invitation to speak")
        if self.seat(person) is not None:
            return self._unchanged(
                now, person, StageAction.ACCEPT_INVITE, person, "already on the stage"
            )
        self._check_room()
        return self._next(
            now,
            person,
            StageAction.ACCEPT_INVITE,
            person,
            "by invitation",
            seats=(*self.seats, Seat(person, name, Role.SPEAKER)),
            hands=self._drop(person),
        )

    def leave(self, person: str, now: float) -> Outcome:
        """Step off the stage into the audience; no change if not on the stage.

        Raises :class:`Forbidden` for the host, who ends the space instead.
        """
        seat = self.seat(person)
        if seat is None:
            return self._unchanged(now, person, StageAction.LEAVE, person, "not on the stage")
        if seat.role is Role.HOST:
            raise Forbidden("the host cannot leave the stage; end the space instead")
        return self._next(
            now, person, StageAction.LEAVE, person, str(seat.role), seats=self._unseat(person)
        )

    # --- moderation ------------------------------------------------------------------------

    def approve(self, actor: str, person: str, now: float) -> Outcome:
        """Host or co-host seats ``person``, whose hand is up, as a speaker.

        Raises :class:`Forbidden` (not a moderator; oneself; a removed person),
        :class:`Conflict` (already on the stage; stage full), :class:`NotFound` (no hand).
        """
        self._moderator(actor, "approve requests to speak")
        _not_self(actor, person, "approve yourself")
        if person in self.blocked:
            raise Forbidden(f"{person} was removed from this space and cannot be approved")
        if self.seat(person) is not None:
            raise Conflict(f"{self._who(person)} is already on the stage")
        position = self.hand_position(person)
        if position is None:
            raise NotFound(f"{person} has not raised a hand")
        self._check_room()
        hand = self.hands[position - 1]
        return self._next(
            now,
            actor,
            StageAction.APPROVE,
            person,
            seats=(*self.seats, Seat(person, hand.name, Role.SPEAKER)),
            hands=self._drop(person),
        )

    def decline(self, actor: str, person: str, now: float) -> Outcome:
        """Host or co-host lowers ``person``'s hand. Raises :class:`NotFound` if not up."""
        self._moderator(actor, "decline requests to speak")
        _not_self(actor, person, "decline yourself")
        if self.hand_position(person) is None:
            raise NotFound(f"{self._who(person)} has not raised a hand")
        return self._next(now, actor, StageAction.DECLINE, person, hands=self._drop(person))

    def move_to_audience(self, actor: str, person: str, now: float) -> Outcome:
        """Host or co-host moves a speaker (the host also a co-host) off the stage.

        A co-host moved to the audience loses the role. Raises :class:`Forbidden` by the
        rules above, :class:`NotFound` if ``person`` is not on the stage.
        """
        role = self._moderator(actor, "move people to the audience")
        _not_self(actor, person, "move yourself to the audience; leave the stage instead")
        seat = self._target_seat(person)
        _guard_rank(role, seat.role, "move {} to the audience")
        return self._next(
            now,
            actor,
            StageAction.MOVE_TO_AUDIENCE,
            person,
            str(seat.role),
            seats=self._unseat(person),
        )

    def mute(self, actor: str, person: str, now: float) -> Outcome:
        """Mute ``person``'s microphone: oneself (anyone on the stage) or, as host or
        co-host, someone else on the stage (recorded as ``muted_by_host``).

        No change if already muted the same way. Raises :class:`Forbidden` by the rules
        above, :class:`NotFound` if ``person`` is not on the stage.
        """
        if actor == person:
            self._refuse_blocked(person, "mute")
            seat = self._target_seat(person)
            if seat.muted:
                return self._unchanged(now, actor, StageAction.MUTE, person, "already muted")
            new = dataclasses.replace(seat, muted=True)
            return self._next(now, actor, StageAction.MUTE, person, "self", seats=self._set(new))
        role = self._moderator(actor, "mute others")
        seat = self._target_seat(person)
        _guard_rank(role, seat.role, "mute {}")
        if seat.muted_by_host:
            return self._unchanged(now, actor, StageAction.MUTE, person, "already muted")
        new = dataclasses.replace(seat, muted=True, muted_by_host=True)
        return self._next(now, actor, StageAction.MUTE, person, "by host", seats=self._set(new))

    def unmute(self, actor: str, person: str, now: float) -> Outcome:
        """Unmute one's own microphone, even after a moderator's mute (clears
        ``muted_by_host``). No change if not muted.

        Raises :class:`Forbidden` if ``actor`` is not ``person`` or was removed,
        :class:`NotFound` if not on the stage.
        """
        if actor != person:
            raise Forbidden(
                "only a speaker can unmute themself; nobody can open another person's microphone"
            )
        self._refuse_blocked(person, "unmute")
        seat = self._target_seat(person)
        if not seat.muted:
            return self._unchanged(now, actor, StageAction.UNMUTE, person, "not muted")
        new = dataclasses.replace(seat, muted=False, muted_by_host=False)
        return self._next(now, actor, StageAction.UNMUTE, person, seats=self._set(new))

    def remove(self, actor: str, person: str, now: float) -> Outcome:
        """Host or co-host removes ``person`` from the space and blocks them: off the stage,
        hand dropped. ``person`` may be any listener, known here or not (the caller also
        stops their listening). No change if already blocked.

        Raises :class:`Forbidden` by the rules above, :class:`Conflict` if the block list
        holds :data:`MAX_BLOCKED` people.
        """
        role = self._moderator(actor, "remove people")
        person = _person(person)
        _not_self(actor, person, "remove yourself")
        seat = self.seat(person)
        if seat is not None:
            _guard_rank(role, seat.role, "remove {}")
        if person in self.blocked:
            return self._unchanged(now, actor, StageAction.REMOVE, person, "already removed")
        if len(self.blocked) >= MAX_BLOCKED:
            raise Conflict(f"the list of removed people is full ({MAX_BLOCKED})")
        was = "listener" if seat is None else str(seat.role)
        return self._next(
            now,
            actor,
            StageAction.REMOVE,
            person,
            was,
            seats=self._unseat(person),
            hands=self._drop(person),
            blocked=self.blocked | {person},
        )

    def unblock(self, actor: str, person: str, now: float) -> Outcome:
        """The host lets a removed person back (as a listener). No change if not blocked."""
        self._host_only(actor, "unblock removed people")
        _not_self(actor, person, "unblock yourself")
        if person not in self.blocked:
            return self._unchanged(now, actor, StageAction.UNBLOCK, person, "not blocked")
        return self._next(now, actor, StageAction.UNBLOCK, person, blocked=self.blocked - {person})

    def make_cohost(self, actor: str, person: str, now: float) -> Outcome:
        """The host makes a speaker a co-host (no change if already one).

        Raises :class:`Forbidden` unless the host, :class:`NotFound` if ``person`` is not
        on the stage, :class:`Conflict` if there are already :data:`MAX_COHOSTS`.
        """
        self._host_only(actor, "make co-hosts")
        _not_self(actor, person, "make yourself a co-host")
        seat = self._target_seat(person)
        if seat.role is Role.COHOST:
            return self._unchanged(now, actor, StageAction.MAKE_COHOST, person, "already co-host")
        if sum(s.role is Role.COHOST for s in self.seats) >= MAX_COHOSTS:
            raise Conflict(f"there are already {MAX_COHOSTS} co-hosts; demote one first")
        new = dataclasses.replace(seat, role=Role.COHOST)
        return self._next(now, actor, StageAction.MAKE_COHOST, person, seats=self._set(new))

    def demote(self, actor: str, person: str, now: float) -> Outcome:
        """The host makes a co-host a speaker again (who stays on the stage).

        Raises :class:`Forbidden` unless the host, :class:`NotFound` if ``person`` is not
        on the stage, :class:`Conflict` if they are not a co-host.
        """
        self._host_only(actor, "demote co-hosts")
        _not_self(actor, person, "demote yourself")
        seat = self._target_seat(person)
        if seat.role is not Role.COHOST:
            raise Conflict(f"{seat.name} is not a co-host")
        new = dataclasses.replace(seat, role=Role.SPEAKER)
        return self._next(now, actor, StageAction.DEMOTE, person, seats=self._set(new))

    # --- serialisation -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` gives back an equal stage."""
        return {
            "schema": SCHEMA,
            "host": self.host,
            "version": self.version,
            "seats": [
                {
                    "person": s.person,
                    "name": s.name,
                    "role": str(s.role),
                    "muted": s.muted,
                    "muted_by_host": s.muted_by_host,
                }
                for s in self.seats
            ],
            "hands": [
                {"person": h.person, "name": h.name, "raised_at": h.raised_at} for h in self.hands
            ],
            # Sorted so that equal stages give equal documents.
            "blocked": sorted(self.blocked),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stage:
        """Inverse of :meth:`to_json`. Raises :class:`InvalidInput` if the document is
        malformed, of another schema, or breaks an invariant of :class:`Stage`."""
        schema = _get(data, "schema", int)
        if schema != SCHEMA:
            raise InvalidInput(f"invalid stage document: schema {schema}, expected {SCHEMA}")
        seats = []
        for item in _get(data, "seats", list):
            role = _get(item, "role", str)
            try:
                kind = Role(role)
            except ValueError:
                raise InvalidInput(f"invalid stage document: unknown role {role!r}") from None
            seats.append(
                Seat(
                    _get(item, "person", str),
                    _get(item, "name", str),
                    kind,
                    _get(item, "muted", bool),
                    _get(item, "muted_by_host", bool),
                )
            )
        hands = [
            Hand(_get(item, "person", str), _get(item, "name", str), _get(item, "raised_at", float))
            for item in _get(data, "hands", list)
        ]
        blocked = _get(data, "blocked", list)
        if not all(isinstance(person, str) for person in blocked):
            raise InvalidInput("invalid stage document: 'blocked' must hold strings")
        stage = cls(
            host=_get(data, "host", str),
            seats=tuple(seats),
            hands=tuple(hands),
            blocked=frozenset(blocked),
            version=_get(data, "version", int),
        )
        stage._check_invariants()
        return stage

    # --- internals -----------------------------------------------------------------------

    def _check_invariants(self) -> None:
        def bad(why: str) -> InvalidInput:
            return InvalidInput(f"invalid stage document: {why}")

        hosts = [s.person for s in self.seats if s.role is Role.HOST]
        if hosts != [self.host]:
            raise bad("exactly one seat must be the host's")
        if len(self.seats) > MAX_ON_STAGE:
            raise bad(f"more than {MAX_ON_STAGE} on the stage")
        if sum(s.role is Role.COHOST for s in self.seats) > MAX_COHOSTS:
            raise bad(f"more than {MAX_COHOSTS} co-hosts")
        on_stage = {s.person for s in self.seats}
        raised = {h.person for h in self.hands}
        if len(on_stage) != len(self.seats) or len(raised) != len(self.hands):
            raise bad("someone holds two seats or two hands")
        if len(self.hands) > MAX_HANDS or len(self.blocked) > MAX_BLOCKED:
            raise bad("too many hands or removed people")
        if on_stage & raised or self.blocked & (on_stage | raised):
            raise bad("a person on the stage or removed has a hand, or a removed one a seat")
        if self.version < 0:
            raise bad("negative version")

    def _who(self, person: str) -> str:
        """A name for messages: the display name if known, else the id."""
        seat = self.seat(person)
        if seat is not None:
            return seat.name
        position = self.hand_position(person)
        return person if position is None else self.hands[position - 1].name

    def _moderator(self, actor: str, what: str) -> Role:
        role = self.role_of(actor)
        if role is not Role.HOST and role is not Role.COHOST:
            raise Forbidden(f"only the host and co-hosts can {what}")
        return role

    def _host_only(self, actor: str, what: str) -> None:
        if actor != self.host:
            raise Forbidden(f"only the host can {what}")

    def _refuse_blocked(self, person: str, what: str) -> None:
        if person in self.blocked:
            raise Forbidden(f"{person} was removed from this space and cannot {what}")

    def _target_seat(self, person: str) -> Seat:
        seat = self.seat(person)
        if seat is None:
            raise NotFound(f"{self._who(person)} is not on the stage")
        return seat

    def _check_room(self) -> None:
        if len(self.seats) >= MAX_ON_STAGE:
            raise Conflict(f"the stage is full ({MAX_ON_STAGE})")

    def _drop(self, person: str) -> tuple[Hand, ...]:
        return tuple(h for h in self.hands if h.person != person)

    def _unseat(self, person: str) -> tuple[Seat, ...]:
        return tuple(s for s in self.seats if s.person != person)

    def _set(self, new: Seat) -> tuple[Seat, ...]:
        return tuple(new if s.person == new.person else s for s in self.seats)

    def _next(
        self,
        now: float,
        actor: str,
        action: StageAction,
        target: str,
        detail: str = "",
        **changes: Any,
    ) -> Outcome:
        stage = dataclasses.replace(self, version=self.version + 1, **changes)
        return stage, AuditEntry(now, actor, action, target, detail)

    def _unchanged(
        self, now: float, actor: str, action: StageAction, target: str, why: str
    ) -> Outcome:
        return self, AuditEntry(now, actor, action, target, f"unchanged: {why}")


def _not_self(actor: str, person: str, what: str) -> None:
    if actor == person:
        raise Forbidden(f"you cannot {what}")


def _guard_rank(actor_role: Role, target_role: Role, verb: str) -> None:
    """Only the host acts on co-hosts, and nobody acts on the host. The actor is a
    moderator other than the target; ``verb`` has a ``{}`` where the target goes."""
    if target_role is Role.HOST:
        raise Forbidden(f"a co-host cannot {verb.format('the host')}")
    if target_role is Role.COHOST and actor_role is not Role.HOST:
        raise Forbidden(
            f"a co-host cannot {verb.format('another co-host')}; only the host acts on co-hosts"
        )


def _person(person: str) -> str:
    if not person or len(person) > MAX_PERSON:
        raise InvalidInput(f"a person id is 1 to {MAX_PERSON} characters")
    return person


def _name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("a display name is required")
    return name[:MAX_NAME]


_KINDS: dict[type, str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
    float: "a number",
    list: "a list",
}


def _get(data: Mapping[str, Any], key: str, kind: type[_T]) -> _T:
    """``data[key]`` if it is a ``kind`` (an int counts as a float, a bool as neither)."""
    if not isinstance(data, Mapping) or key not in data:
        raise InvalidInput(f"invalid stage data: missing {key!r}")
    value = data[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidInput(f"invalid stage data: {key!r} must be {_KINDS[kind]}")
    return value
