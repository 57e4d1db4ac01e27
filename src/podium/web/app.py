"""The ASGI application: routes, error handlers and middleware around a :class:`Context`."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from podium import __version__
from podium.origin import routes as origin_routes
from podium.web import (
    api,
    archive,
    defence,
    feeds,
    fleet,
    openapi,
    ops,
    pages,
    problems,
    room,
    whip,
)
from podium.web.context import Context
from podium.web.joinpath import BeaconFastPath, JoinFastPath
from podium.web.middleware import RequestGuard

DESCRIPTION = """Live audio spaces: speakers over WebRTC, listeners over LL-HLS, replays at once.

Authenticate scripts with an API token (`Authorization: Bearer pdm_…`; the server's first
start writes the owner's to `<data>/owner.token`). Browser sessions use a cookie and must
echo their CSRF token in `X-CSRF-Token` on writes. Errors are RFC 9457 problem details.
"""


def create_app(context: Context) -> FastAPI:
    app = FastAPI(
        title="Podium",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.context = context
    app.state.origin = context.origin
    problems.install(app)
    routers = [
        api.router,
        whip.router,
        room.router,
        archive.router,
        origin_routes.router,
        ops.router,
        defence.router,
        fleet.router,
        feeds.router,
        pages.router,
    ]
    for router in routers:
        app.include_router(router)
    # Every route, flat (the app keeps included routers nested): for the OpenAPI document
    # and for the methods a 405 names.
    app.state.api_routes = [route for router in routers for route in router.routes]
    openapi.install(app, app.state.api_routes)
    app.mount("/static", pages.static_files, name="static")
    app.mount("/docs/assets", pages.swagger_files, name="docs-assets")
    context.metrics.add_gauges(lambda: ops.control_gauges(context))
    context.metrics.add_gauges(lambda: ops.admission_gauges(context))
    context.metrics.add_gauges(lambda: ops.fleet_gauges(context))
    app.add_middleware(JoinFastPath)
    app.add_middleware(BeaconFastPath)
    # Listeners' players and speakers' pages may live on other origins (an embed, a WHIP
    # tool). No credentials ride along cross-origin: cookie sessions stay same-site.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "If-Match"],
        expose_headers=["Location", "ETag", "Link", "Accept-Patch", "Retry-After"],
        max_age=600,
    )
    app.add_middleware(
        RequestGuard,
        metrics=context.metrics,
        max_body_bytes=context.settings.max_body_bytes,
        body_timeout=context.settings.body_timeout_s,
    )
    return app
