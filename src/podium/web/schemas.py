"""The API's request and response bodies.

Requests are strict: unknown fields and wrong types are refused (422) rather than ignored
or coerced, so a typo in a field name is an error the caller sees.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from podium.control.accounts import HANDLE_PATTERN, PASSWORD_MAX, PASSWORD_MIN
from podium.control.spaces import DESCRIPTION_MAX, TITLE_MAX


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


Handle = Field(pattern=HANDLE_PATTERN.pattern, examples=["river"])
Password = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class NewUser(Request):
    handle: str = Handle
    display_name: str = Field(default="", max_length=64)
    password: str | None = Field(default=None, min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


class UserOut(BaseModel):
    id: str
    handle: str
    display_name: str
    is_admin: bool
    created_at: str


class SignIn(Request):
    handle: str = Field(max_length=30)
    password: str = Field(max_length=PASSWORD_MAX)


class NewToken(Request):
    # Handle and password come together or not at all; either is left out, never null.
    model_config = ConfigDict(
        json_schema_extra={"dependentRequired": {"handle": ["password"], "password": ["handle"]}}
    )

    name: str = Field(default="cli", min_length=1, max_length=64)
    handle: Annotated[
        str | None,
        WithJsonSchema(
            {
                "type": "string",
                "maxLength": 30,
                "description": "With password: sign in and issue a token.",
            }
        ),
    ] = Field(default=None, max_length=30)
    password: Annotated[
        str | None, WithJsonSchema({"type": "string", "maxLength": PASSWORD_MAX})
    ] = Field(default=None, max_length=PASSWORD_MAX)

    @field_validator("handle", "password", mode="before")
    @classmethod
    def _left_out_not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave it out rather than sending null")
        return value


class TokenOut(BaseModel):
    id: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class IssuedToken(TokenOut):
    token: str = Field(description="The token itself. It is shown only once.")


class TokenList(BaseModel):
    tokens: list[TokenOut]


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="Send it as X-CSRF-Token on every write.")
    expires_at: str


class NewSpace(Request):
    title: str = Field(min_length=1, max_length=TITLE_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    scheduled_start: datetime | None = Field(
        default=None,
        strict=False,
        description="RFC 3339 time with a UTC offset, e.g. 2026-12-01T18:00:00Z.",
    )
    in_feed: bool = Field(
        default=True, description="Whether the space is an episode of the podcast feeds."
    )


class SpaceChange(Request):
    in_feed: bool | None = Field(
        default=None,
        description="Let the space into the podcast feeds (true) or keep it out (false).",
    )


class HostOut(BaseModel):
    id: str
    handle: str
    display_name: str


SpaceStatusName = Literal["scheduled", "live", "ended", "cancelled"]


class SpaceOut(BaseModel):
    id: str
    title: str
    description: str
    status: SpaceStatusName
    host: HostOut
    scheduled_start: str | None
    created_at: str
    started_at: str | None
    ended_at: str | None
    page_url: str = Field(description="The space's public page.")
    whip_url: str = Field(description="Where speakers publish audio (WHIP, RFC 9725).")
    playlist_url: str = Field(
        description="The entry point for any HLS player: a multivariant playlist whose one "
        'audio-only variant (CODECS="mp4a.40.2") is the media playlist; live while the '
        "space is, then the replay."
    )
    media_playlist_url: str = Field(
        description="The LL-HLS media playlist itself, for clients that take one directly."
    )
    replay_url: str = Field(description="The whole space as one M4A file, once ended.")
    state_url: str = Field(description="The room state document (cacheable, long-poll).")
    recording: Literal["off", "ok", "degraded"] = Field(
        description="off before the space goes live; degraded if storage failed (the "
        "broadcast goes on, the recording stopped at the failure)."
    )
    recording_detail: str = Field(description="Why the recording is degraded, if it is.")
    in_feed: bool = Field(description="Whether the space is an episode of the podcast feeds.")
    feed_url: str = Field(description="The host's podcast feed (RSS 2.0, Podcasting 2.0).")


class SpaceList(BaseModel):
    spaces: list[SpaceOut]
