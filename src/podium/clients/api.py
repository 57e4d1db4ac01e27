"""A small synchronous client for the JSON API, used by the command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from podium import __version__
from podium.errors import ClientError


@dataclass(frozen=True, slots=True)
class Credential:
    """An API token and where it came from (``source``, as a user would name it).
    ``default`` is true for a token nobody asked for: the default token file, found
    where the command runs, which may well belong to another server."""

    token: str
    source: str
    default: bool = False

    def refused(self, explanation: str, choices: str = "--token-file FILE") -> ClientError:
        """The error for a server's 401 to this token: where it came from a default, it
        names the file and how to choose another (``choices``: the command's own flags)."""
        if not self.default:
            return ClientError(explanation, 401)
        return ClientError(
            f"{explanation}; that token came from the default token file {self.source},"
            f" which may belong to another server: choose another with {choices},"
            " PODIUM_TOKEN_FILE or PODIUM_TOKEN",
            401,
        )


class ApiClient:
    """Calls ``/api/v1`` on ``server``; every failure becomes a :class:`ClientError` with
    the server's own explanation (its problem ``detail``) when there is one.

    A token from a default that the server refuses (401) is named in the error, with how
    to choose another: it may well belong to another server.
    """

    def __init__(
        self,
        server: str,
        credential: Credential | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.server = server.rstrip("/")
        self._credential = credential
        headers = {"User-Agent": f"podium-cli/{__version__}", "Accept": "application/json"}
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential.token}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response = self._request(method, path, body, params)
        if response.status_code == 401 and self._credential is not None:
            raise self._credential.refused(_explain(response))
        if response.status_code == 204:
            return None
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise ClientError(
                    f"{self.server} answered with something that is not JSON; "
                    "is it a Podium server?",
                    response.status_code,
                ) from exc
        raise ClientError(_explain(response), response.status_code)

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, Any] | None,
    ) -> httpx.Response:
        try:
            return self._http.request(method, "/api/v1" + path, json=body, params=params)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach Podium at {self.server}: {exc}") from exc


def _explain(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"the server answered {response.status_code} {response.reason_phrase}"
    if isinstance(problem, dict) and "detail" in problem:
        title = problem.get("title", response.reason_phrase)
        return f"{title}: {problem['detail']} ({response.status_code})"
    return f"the server answered {response.status_code} {response.reason_phrase}"
