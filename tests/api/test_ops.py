"""Liveness, readiness, metrics, OpenAPI and the docs page."""

from __future__ import annotations

import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from harness import Server, assert_problem, start_server


def test_livez_and_readyz(server: Server) -> None:
    with server.client() as anon:
        assert anon.get("/livez").json() == {"status": "ok"}
        assert anon.get("/readyz").json() == {"status": "ready"}


def _make_unwritable(data: Path, elsewhere: Path) -> None:
    """Take writes away from the data directory, even for root (modes do not stop root):
    mark it immutable where the filesystem can, else move it out from under the server."""
    subprocess.run(["chattr", "+i", str(data)], check=False, capture_output=True)
    try:
        (data / "probe").write_text("x")
    except OSError:
        return
    (data / "probe").unlink()
    data.rename(elsewhere)


def test_readyz_is_503_when_storage_is_not_writable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    running = start_server(data)
    try:
        with running.client() as anon:
            assert anon.get("/readyz").status_code == 200
            _make_unwritable(data, tmp_path / "moved")
            problem = assert_problem(anon.get("/readyz"), 503, "storage-unavailable")
            assert "not writable" in problem["detail"]
            assert anon.get("/livez").status_code == 200
    finally:
        subprocess.run(["chattr", "-i", str(data)], check=False, capture_output=True)
        running.stop()


def test_metrics_follow_prometheus_conventions(server: Server) -> None:
    with server.client() as anon:
        anon.get("/livez")
        anon.get("/api/v1/spaces/nope")
        text = anon.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text.text)}
    for name in (
        "podium_http_requests",
        "podium_http_request_duration_seconds",
        "podium_spaces",
        "podium_accounts",
        "podium_build_info",
    ):
        assert name in families, name
    assert families["podium_http_requests"].type == "counter"
    routes = {s.labels.get("route") for s in families["podium_http_requests"].samples}
    assert "/api/v1/spaces/{space_id}" in routes  # templates, not raw paths
    assert "/api/v1/spaces/nope" not in routes
    for family in families.values():
        assert family.name.startswith("podium_"), family.name
    assert "_created" not in text.text


def test_openapi_and_docs_are_served_locally(server: Server) -> None:
    with server.client() as anon:
        spec = anon.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.")
        for path in ("/api/v1/spaces", "/api/v1/spaces/{space_id}/start", "/api/v1/tokens"):
            assert path in spec["paths"]
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
        docs = anon.get("/docs")
        assert docs.status_code == 200
        assert "cdn" not in docs.text.lower()
        for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
            assert anon.get(asset).status_code == 200, asset
