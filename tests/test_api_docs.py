"""docs/api.md runs: every ```sh block, in order, against a real server with the demo data.

The examples check their own replies (``curl --fail-with-body`` where success is documented,
the ``expect CODE`` helper where an error is), so a change in the API that the guide does not
follow fails here instead of misleading an integrator.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCK = re.compile(r"^```(?:sh|bash)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SECRET = "api-docs-test-secret-key-long-enough-0123456789"
START_TIMEOUT = 60.0
SCRIPT_TIMEOUT = 180.0

pytestmark = pytest.mark.slow


def _blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def _farmstand() -> str:
    """The `farmstand` command of the environment running the tests."""
    sibling = Path(sys.executable).with_name("farmstand")
    found = str(sibling) if sibling.exists() else shutil.which("farmstand")
    assert found, "the `farmstand` command is not installed"
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _environment(data_dir: Path) -> dict[str, str]:
    # Only our settings: a developer's FARMSTAND_* variables must not point at their database.
    env = {key: value for key, value in os.environ.items() if not key.startswith("FARMSTAND_")}
    env.update(
        FARMSTAND_DATA_DIR=str(data_dir),
        FARMSTAND_SECRET_KEY=SECRET,
        FARMSTAND_LOG_LEVEL="WARNING",
        # Cheap password hashing: the demo users are created and signed in many times.
        FARMSTAND_PASSWORD_HASH_TIME_COST="1",
        FARMSTAND_PASSWORD_HASH_MEMORY_KIB="1024",
        PYTHONUNBUFFERED="1",
    )
    return env


def _run(command: list[str], env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"


def _wait_until_healthy(base: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /healthz in {START_TIMEOUT:g}s:\n{log.read_text()}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[str]:
    """`farmstand migrate`, `demo`, then `serve` on a free port; yields its base URL."""
    data_dir = tmp_path / "data"
    env = _environment(data_dir)
    farmstand = _farmstand()
    # Run from an empty directory, so no `.env` file of the checkout is read.
    _run([farmstand, "migrate"], env, tmp_path)
    _run([farmstand, "demo"], env, tmp_path)
    port = _free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [farmstand, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_healthy(base, server, log)
        yield base
    finally:
        _stop(server)


def test_guide_has_examples_that_check_their_replies() -> None:
    blocks = _blocks()
    assert len(blocks) >= 10, "docs/api.md lost its examples"
    # Every request fails on an error status, or captures the status to check it (`expect`).
    for block in blocks:
        for line in block.splitlines():
            request = line.strip()
            if request.startswith("curl ") or "$(curl " in request:
                checked = "--fail-with-body" in request or "%{http_code}" in request
                assert checked, f"an example that ignores its status: {line!r}"
    # And each error the guide explains is shown by an example.
    script = "\n".join(blocks)
    for code in ("400", "401", "403", "404", "409", "422", "429"):
        example = re.search(rf"(^|\|)\s*expect {code} ", script, re.MULTILINE)
        assert example, f"no example of a {code} reply"


def test_every_example_in_the_guide_works(demo_server: str, tmp_path: Path) -> None:
    # Given the guide's shell blocks, joined in order into one script
    blocks = _blocks()
    parts = ["set -euo pipefail"]
    for number, block in enumerate(blocks, start=1):
        parts += [f"echo '### block {number} of {len(blocks)}' >&2", block]
    parts.append("echo '### all blocks ran' >&2")
    script = tmp_path / "api-guide.sh"
    script.write_text("\n".join(parts) + "\n")

    # When bash runs it against the demo server
    env = {**_environment(tmp_path / "unused"), "BASE": demo_server}
    result = subprocess.run(
        ["bash", str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )

    # Then every block ran and every request got the reply the guide shows
    output = f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    assert result.returncode == 0, f"an example in docs/api.md failed\n{output}"
    assert "### all blocks ran" in result.stderr, output
