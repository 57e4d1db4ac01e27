"""The pages and their static files over real HTTP: every page answers, links nothing on
another origin, and says so in its Content-Security-Policy; assets are versioned,
immutable, compressed and revalidated; no path reaches outside the static folder; every
static file ships in the package."""

from __future__ import annotations

import fnmatch
import re
import socket
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from harness import Server, make_account
from podium.web.assets import StaticAssets

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "podium" / "web" / "static"
LINK = re.compile(r'(?:src|href|action)="([^"]*)"')
# Any address written out in a page, linked or not (a CDN would be one).
ABSOLUTE_URL = re.compile(r"(?:https?:)?//[A-Za-z0-9.\[\]:-]+")


@pytest.fixture(scope="module")
def spaces(server: Server) -> dict[str, str]:
    """One space in each state, by state."""
    host = make_account(server, "host")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with server.client(host.token) as client:
        made = {
            name: client.post("/api/v1/spaces", json={"title": f"A {name} space", **extra}).json()[
                "id"
            ]
            for name, extra in (
                ("live", {}),
                ("ended", {"description": "Tea & <b>talk</b>"}),
                ("scheduled", {"scheduled_start": later}),
            )
        }
        for name in ("live", "ended"):
            assert client.post(f"/api/v1/spaces/{made[name]}/start").status_code == 200
        assert client.post(f"/api/v1/spaces/{made['ended']}/end").status_code == 200
    return made


def _pages(spaces: dict[str, str]) -> list[str]:
    return [
        "/",
        "/signin",
        "/signup",
        "/host",
        *(f"/s/{space_id}" for space_id in spaces.values()),
        *(f"/s/{space_id}/host" for space_id in spaces.values()),
    ]


def test_every_page_answers_and_links_only_its_own_origin(
    server: Server, spaces: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for path in _pages(spaces):
            page = http.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            policy = page.headers["content-security-policy"]
            for directive in (
                "default-src 'self'",
                "script-src 'self'",
                "connect-src 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
                "object-src 'none'",
            ):
                assert directive in policy, (path, directive)
            assert "<script>" not in page.text, f"{path}: inline scripts break the policy"
            assert " style=" not in page.text, f"{path}: inline styles break the policy"
            for link in LINK.findall(page.text):
                parts = urlsplit(link)
                assert not parts.scheme, f"{path} links {link}"
                assert not parts.netloc, f"{path} links {link}"
                if link.startswith("/static/"):
                    assert http.get(link).status_code == 200, f"{path}: {link}"
            # Not a search for the letters "cdn": the home page lists random space ids.
            for address in ABSOLUTE_URL.findall(page.text):
                assert address.split("//", 1)[1] == server.url.split("//", 1)[1], (
                    f"{path} names another origin: {address}"
                )


def test_pages_show_the_space_as_it_is(server: Server, spaces: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        home = http.get("/").text
        for space_id in spaces.values():
            assert f'href="/s/{space_id}"' in home
        live = http.get(f"/s/{spaces['live']}").text
        assert 'data-view="listen">' in live  # the first view shown, before any script
        ended = http.get(f"/s/{spaces['ended']}").text
        assert 'data-view="ended">' in ended
        assert f'href="/hls/{spaces["ended"]}/replay.m4a"' in ended
        assert "Tea &amp; &lt;b&gt;talk&lt;/b&gt;" in ended  # escaped, never markup
        scheduled = http.get(f"/s/{spaces['scheduled']}").text
        assert 'data-view="scheduled">' in scheduled
        assert f"/api/v1/spaces/{spaces['scheduled']}/calendar.ics" in scheduled
        # The same page for everyone, so an edge may hold it briefly.
        assert http.get(f"/s/{spaces['live']}").headers["cache-control"] == "public, max-age=5"


def test_unknown_spaces_are_404_pages(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for path in ("/s/doesnotexist", "/s/doesnotexist/host"):
            page = http.get(path)
            assert page.status_code == 404
            assert "No such space" in page.text
            assert page.headers["cache-control"] == "no-cache"


def _asset_urls(server: Server) -> list[str]:
    page = httpx.get(f"{server.url}/signin", timeout=10).text
    return [link for link in LINK.findall(page) if link.startswith("/static/")]


def test_assets_are_versioned_immutable_compressed_and_revalidated(server: Server) -> None:
    urls = _asset_urls(server)
    assert {u.rsplit("/", 1)[-1] for u in urls} >= {"podium.css", "account.js", "icon.svg"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for url in urls:
            answer = http.get(url, headers={"Accept-Encoding": "gzip"})
            assert answer.status_code == 200
            assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert answer.headers["x-content-type-options"] == "nosniff"
            again = http.get(url, headers={"If-None-Match": answer.headers["etag"]})
            assert again.status_code == 304
        css = next(u for u in urls if u.endswith("podium.css"))
        packed = http.get(css, headers={"Accept-Encoding": "gzip"})
        assert packed.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in packed.headers["vary"]
        assert packed.headers["content-type"] == "text/css; charset=utf-8"
        plain = http.get(css, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == (STATIC / "podium.css").read_bytes()
        assert packed.content == plain.content  # httpx decompressed it
        # The same file without the build, or under an older build: current, revalidated.
        build = css.split("/")[2]
        for url in ("/static/podium.css", "/static/000000000000/podium.css"):
            answer = http.get(url)
            assert answer.status_code == 200, url
            assert answer.headers["cache-control"] == "no-cache"
            assert answer.content == plain.content
        # hls.js is served, byte for byte the vendored file, as JavaScript.
        hls = http.get(f"/static/{build}/vendor/hls.min.js")
        assert hls.headers["content-type"] == "text/javascript; charset=utf-8"
        assert hls.content == (STATIC / "vendor" / "hls.min.js").read_bytes()
        assert http.head(f"/static/{build}/vendor/hls.min.js").status_code == 200
        refused = http.post(css)
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"


def test_modules_import_each_other_within_one_build(server: Server) -> None:
    build = _asset_urls(server)[0].split("/")[2]
    imports = re.compile(r'(?:from |import )"\./([\w.]+)"')
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for module in sorted((STATIC / "js").glob("*.js")):
            assert http.get(f"/static/{build}/js/{module.name}").status_code == 200
            for name in imports.findall(module.read_text()):
                answer = http.get(f"/static/{build}/js/{name}")
                assert answer.status_code == 200, f"{module.name} imports {name}"


def _raw_get(server: Server, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: clients normalise dot segments, attackers do not."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fpyproject.toml",
        "/static/js/../../assets.py",
        "/static/js/../podium.css",
        "/static/BUILD/../assets.py",
        "/static/BUILD/js/../../shell.py",
        "/static/",
        "/static/js/",
        "/static/%00",
        "/static/vendor/hls.min.js.map",
    ],
)
def test_path_tricks_find_nothing_in_static(server: Server, path: str) -> None:
    build = _asset_urls(server)[0].split("/")[2]
    status, body = _raw_get(server, path.replace("BUILD", build))
    assert status in (400, 404), path
    assert b"root:" not in body
    assert b"import " not in body


def test_every_static_file_ships_in_the_package() -> None:
    """setuptools package data lists globs per folder: a new folder must be added there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["podium"]
    package = ROOT / "src" / "podium"
    for path in STATIC.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(package).as_posix()
            assert any(
                fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/")
                for p in patterns
            ), f"{relative} is not package data"


def test_the_build_names_the_content(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "js" / "a.js").write_text("export const a = 1;\n")
    (tmp_path / ".hidden").write_text("secret")
    (tmp_path / "link.js").symlink_to(tmp_path / "js" / "a.js")
    first = StaticAssets(tmp_path)
    assert set(first.assets) == {"js/a.js"}
    assert first.url("js/a.js") == f"/static/{first.build}/js/a.js"
    assert first.lookup(f"/{first.build}/js/a.js") == (first.assets["js/a.js"], True)
    assert first.lookup("/js/a.js") == (first.assets["js/a.js"], False)
    assert first.lookup(f"/{first.build}/../js/a.js")[0] is None
    (tmp_path / "js" / "a.js").write_text("export const a = 2;\n")
    second = StaticAssets(tmp_path)
    assert second.build != first.build
    # A page from before the change still gets the script, no longer cached for a year.
    assert second.lookup(f"/{first.build}/js/a.js") == (second.assets["js/a.js"], False)
    with pytest.raises(KeyError):
        second.url("js/missing.js")
