"""A small synchronous client for the JSON API, used by the command line."""

from __future__ import annotations

from typing import Any

import httpx

from podium import __version__
from podium.errors import ClientError


class ApiClient:
    """Calls ``/api/v1`` on ``server``; every failure becomes a :class:`ClientError` with
    the server's own explanation (its problem ``detail``) when there is one."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 15.0) -> None:
        self.server = server.rstrip("/")
        headers = {"User-Agent": f"podium-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
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
        try:
            response = self._http.request(method, "/api/v1" + path, json=body, params=params)
        except httpx.TransportError as exc:
            raise ClientError(f"cannot reach Podium at {self.server}: {exc}") from exc
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


def _explain(response: httpx.Response) -> str:
    try:
        problem = response.json()
    except ValueError:
        return f"the server answered {response.status_code} {response.reason_phrase}"
    if isinstance(problem, dict) and "detail" in problem:
        title = problem.get("title", response.reason_phrase)
        return f"{title}: {problem['detail']} ({response.status_code})"
    return f"the server answered {response.status_code} {response.reason_phrase}"
