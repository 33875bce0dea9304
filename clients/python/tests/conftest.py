"""Fixtures: a real `hookplane dev`, clients of it, and HTTP targets.

The server comes from the environment, as the Rust harness
(cli/tests/python_client.rs) starts it: HOOKPLANE_GRPC (host:port),
HOOKPLANE_HTTP (trigger base URL) and HOOKPLANE_ADMIN_KEY_FILE. Without
them, the suite starts `$HOOKPLANE_BIN dev` itself in a temporary
directory, so `HOOKPLANE_BIN=target/debug/hookplane pytest` works alone.
HOOKPLANE_BIN is needed either way by the tests that start servers of
their own. Nothing here skips: a missing server is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hookplane_dev import DevServer, Target, start_target

from hookplane_sdk import Client


@dataclass(frozen=True)
class Server:
    grpc_address: str
    http_base: str
    admin_key: str


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set (see tests/conftest.py)", pytrace=False)
    return value


@pytest.fixture(scope="session")
def hookplane_bin() -> str:
    return _required_env("HOOKPLANE_BIN")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("HOOKPLANE_GRPC"):
        key = Path(_required_env("HOOKPLANE_ADMIN_KEY_FILE")).read_text().strip()
        yield Server(_required_env("HOOKPLANE_GRPC"), _required_env("HOOKPLANE_HTTP").rstrip("/"), key)
        return
    dev = DevServer(_required_env("HOOKPLANE_BIN"), tmp_path_factory.mktemp("hookplane") / "data")
    try:
        dev.wait_ready()
        yield Server(dev.grpc_address, dev.http_base, dev.admin_key_file.read_text().strip())
    finally:
        dev.stop()


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[Client]:
    with Client(server.grpc_address, server.admin_key) as client:
        yield client


@pytest.fixture
def target() -> Iterator[Target]:
    target = start_target()
    try:
        yield target
    finally:
        target.server.shutdown()
        target.server.server_close()


@pytest.fixture
def unique() -> str:
    """A suffix keeping names and idempotency keys apart across tests and runs."""
    return secrets.token_hex(4)


_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # The suite must never pass by skipping: a skip would mean a check
    # silently did not run.
    if _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAILED: skipped, and this suite must run everything: {', '.join(_skipped)}")
