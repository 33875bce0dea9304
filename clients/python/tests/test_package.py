"""The package as users meet it: the README's example runs, and the types
hold (mypy --strict over the SDK, and over this suite and the example using
the installed package)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Server
from hookplane_dev import Target

PACKAGE = Path(__file__).resolve().parents[1]
EXAMPLE = PACKAGE / "examples" / "quickstart.py"


def test_the_readme_shows_the_example_verbatim() -> None:
    # The README's example is this file, so running it below checks the
    # README too; this fails when one is edited without the other.
    assert EXAMPLE.read_text() in (PACKAGE / "README.md").read_text()


def test_the_quickstart_example_runs_against_the_server(server: Server, target: Target, tmp_path: Path) -> None:
    key_file = tmp_path / "admin-key"
    key_file.write_text(server.admin_key)
    env = {
        **os.environ,
        "HOOKPLANE_GRPC": server.grpc_address,
        "HOOKPLANE_HTTP": server.http_base,
        "HOOKPLANE_ADMIN_KEY_FILE": str(key_file),
        "TARGET_URL": f"{target.url}/orders",
    }
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr

    received = target.next_request()
    assert (received.path, received.json()) == ("/orders", {"id": 42})
    lines = run.stdout.splitlines()
    assert lines[0].startswith("trigger: {'status': 'completed'")
    assert lines[1] == 'event: EVENT_STATUS_COMPLETED 200 {"order_id":42}'
    assert any(line.endswith(" New orders to the ERP") for line in lines if line.startswith("connector: con_"))
    assert lines[-1].startswith("error: INVALID_ARGUMENT [('connector.display_name', ")


def mypy(tmp_path: Path, *paths: Path) -> None:
    cache = os.environ.get("MYPY_CACHE_DIR") or str(tmp_path / "mypy-cache")
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PACKAGE / "pyproject.toml"), "--cache-dir", cache]
        + [str(path) for path in paths],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_sdk_type_checks_strictly(tmp_path: Path) -> None:
    # With the generated modules' stubs: a proto change that breaks the
    # wrapper fails here.
    mypy(tmp_path, PACKAGE / "src" / "hookplane_sdk")


def test_users_get_the_types_of_the_installed_package(tmp_path: Path) -> None:
    # The suite and the example import hookplane_sdk and hookplane.v1 as an
    # installed package, which mypy reads only when marked py.typed (PEP 561).
    mypy(tmp_path, PACKAGE / "tests", PACKAGE / "examples")
