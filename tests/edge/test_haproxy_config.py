"""`podium lb-config haproxy`: a configuration HAProxy 2.6 itself accepts (``haproxy -c``),
and clear refusals of what cannot make one. Its behaviour under load and with a node
killed is tests/fleet/test_behind_haproxy.py's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

NODES = ("http://10.0.0.11:8080", "http://10.0.0.12:8080", "http://[fd00::13]:8080")


def _lb_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podium", "lb-config", "haproxy", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_the_configuration_is_valid_haproxy(tmp_path: Path) -> None:
    printed = _lb_config(
        *(arg for node in NODES for arg in ("--node", node)),
        "--listen",
        "127.0.0.1:8000",
        "--admin-socket",
        str(tmp_path / "admin.sock"),
        "--maxconn",
        "4000",
    )
    assert printed.returncode == 0, printed.stderr
    config = tmp_path / "haproxy.cfg"
    config.write_text(printed.stdout)
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = printed.stdout
    for server in ("web1 10.0.0.11:8080", "web2 10.0.0.12:8080", "web3 [fd00::13]:8080"):
        assert f"    server {server}\n" in text
    assert "option httpchk GET /readyz" in text
    assert "option forwardfor" in text
    assert "path_beg /internal/" in text
    assert "timeout server 30s" in text  # longer than a long poll (20 s)


def test_what_cannot_make_a_configuration_is_refused() -> None:
    for args, message in (
        (("--node", "10.0.0.1:8080"), "http://host:port"),
        (("--node", "http://a:1", "--node", "http://a:1"), "named twice"),
        (("--node", "http://a:1", "--listen", "a b"), "is not an address"),
        (("--node", "http://a:1", "--maxconn", "0"), "at least 1"),
    ):
        printed = _lb_config(*args)
        assert printed.returncode != 0, args
        assert message in printed.stderr, printed.stderr
        assert "Traceback" not in printed.stderr
