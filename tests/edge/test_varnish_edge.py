"""Podium behind a real Varnish, configured by `podium edge-config varnish`.

The configuration the command prints is VCL that varnishd compiles. The cache rules both
edges share are tested in test_edge_rules.py, crowds in test_edge_crowd.py.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from harness import PODIUM


def test_edge_config_command_prints_vcl_varnish_accepts() -> None:
    result = subprocess.run(
        [*PODIUM, "edge-config", "varnish", "--origin", "http://10.1.2.3:8080"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout.startswith("vcl 4.1;")
    assert '.host = "10.1.2.3";' in result.stdout
    with tempfile.NamedTemporaryFile("w", suffix=".vcl") as vcl:
        vcl.write(result.stdout)
        vcl.flush()
        os.chmod(vcl.name, 0o644)  # varnishd compiles as the varnish user
        compiled = subprocess.run(
            ["varnishd", "-C", "-f", vcl.name], capture_output=True, timeout=60
        )
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    refused = subprocess.run(
        [*PODIUM, "edge-config", "varnish", "--origin", "https://cdn.example/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "http://host:port" in refused.stderr


def test_edge_config_refuses_nginx_options_for_varnish() -> None:
    refused = subprocess.run(
        [*PODIUM, "edge-config", "varnish", "--origin", "http://127.0.0.1:8080", "--listen", "80"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "--listen and --cache-dir are for nginx" in refused.stderr
