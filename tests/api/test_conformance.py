"""The API does what its OpenAPI document says, checked by a client nobody here wrote:
schemathesis generates requests from a running server's ``/openapi.json`` (examples,
boundary values, random and schema-violating data, and sequences that follow the links
between operations) as the host and as nobody, and checks every answer: no server error,
every status code and content type documented, every body matching its schema, problem
details for every error, schema-violating input refused, ``Allow`` on 405, credentials
refused where they are required.

Settings the checks share are in ``schemathesis.toml``; ``schemathesis_hooks`` sends the
WHIP bodies (SDP) as text. The seed is fixed so that a run here is reproducible; a longer
run with other seeds is ``schemathesis run`` with the same settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import start_server

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# Revoking the one token the host run authenticates with would leave the rest of that run
# anonymous; the anonymous run covers the operation.
REVOKE_TOKEN = "revoke_token_api_v1_tokens__token_id__delete"


@pytest.mark.parametrize("who", ["host", "anonymous"])
def test_the_api_answers_as_its_description_says(who: str, tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "data",
        env={
            "PODIUM_SIGNIN_BURST": "10000",
            "PODIUM_LOG_LEVEL": "warning",
            # Long polls answer within a second, so that a run is not mostly waiting.
            "PODIUM_LONG_POLL_S": "1",
        },
    )
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        # Valid by the schema is not always valid (a scheduled start in the past, a WHIP
        # offer that is not SDP): those are 422 problems, which the other checks check.
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "50",
        "--seed",
        "1",
        "--workers",
        "2",
        "--request-timeout",
        "15",
        "--generation-database",
        "none",
        "--no-color",
    ]
    if who == "host":
        command += [
            "--header",
            f"Authorization: Bearer {server.owner_token}",
            "--exclude-operation-id",
            REVOKE_TOKEN,
        ]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks"}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")])
    )
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=600,
            env=environment,
            check=False,
            cwd=tmp_path,
        )
    finally:
        server.stop()
    report = done.stdout[-12000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "API Operations" in done.stdout, report
    unhandled = [line for line in server.stderr_lines if "unhandled_error" in line]
    assert not unhandled, unhandled[:3]
