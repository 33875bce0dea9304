"""UNAVAILABLE is retried with bounded, jittered backoff; nothing else is."""

from __future__ import annotations

import secrets
import string
import threading
import time
from pathlib import Path

import grpc
import pytest
from hookplane.v1 import events_pb2
from hookplane.v1 import organizations_pb2 as orgs
from hookplane_dev import DevServer, free_port

from hookplane_sdk import ApiError, Client, RetryEvent, RetryPolicy


def test_a_call_made_before_the_server_starts_succeeds_by_retrying(hookplane_bin: str, tmp_path: Path) -> None:
    port = free_port()
    # The operator key is the one credential `dev` reads from its data
    # directory rather than minting, so the client can hold a valid key
    # before the server exists.
    data_dir = tmp_path / "late"
    data_dir.mkdir(mode=0o700)
    operator_key = "hpo_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    key_file = data_dir / "operator-key"
    key_file.write_text(operator_key + "\n")
    key_file.chmod(0o600)

    retries: list[RetryEvent] = []
    first_failure = threading.Event()

    def on_retry(event: RetryEvent) -> None:
        retries.append(event)
        first_failure.set()

    servers: list[DevServer] = []

    def start_after_the_first_failure() -> None:
        # Started only once the call has failed for real, so the success
        # below can only come from a retry.
        if first_failure.wait(timeout=30):
            servers.append(DevServer(hookplane_bin, data_dir, grpc_listen=f"127.0.0.1:{port}"))

    starter = threading.Thread(target=start_after_the_first_failure)
    starter.start()
    policy = RetryPolicy(max_attempts=100, initial_backoff=0.05, max_backoff=0.5, on_retry=on_retry)
    try:
        with Client(f"127.0.0.1:{port}", operator_key, retry=policy) as client:
            listed = client.organizations.ListOrganizations(orgs.ListOrganizationsRequest(), timeout=60)
    finally:
        starter.join(timeout=40)
        for server in servers:
            server.stop()

    assert [o.display_name for o in listed.organizations] == ["Default organization"]
    assert servers, "the server was started after a failed attempt"
    assert retries and all(r.code == grpc.StatusCode.UNAVAILABLE for r in retries)
    assert [r.attempt for r in retries] == list(range(1, len(retries) + 1))
    assert all(r.method == "/hookplane.v1.OrganizationService/ListOrganizations" for r in retries)
    assert all(0 < r.delay <= 0.5 for r in retries), "every wait is within the policy's bounds"


def test_retries_stop_after_max_attempts() -> None:
    retries: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05, on_retry=retries.append)
    with Client(f"127.0.0.1:{free_port()}", "hpk_nobodylistens", retry=policy) as client:
        with pytest.raises(ApiError) as unavailable:
            client.plans.ListPlans(orgs.ListPlansRequest())
    assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
    assert [r.attempt for r in retries] == [1, 2], "three attempts, two waits"


def test_the_call_timeout_bounds_all_attempts_together() -> None:
    retries: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=1000, initial_backoff=0.05, max_backoff=0.2, on_retry=retries.append)
    with Client(f"127.0.0.1:{free_port()}", "hpk_nobodylistens", retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ApiError) as failed:
            client.plans.ListPlans(orgs.ListPlansRequest(), timeout=1.0)
        elapsed = time.monotonic() - started
    assert failed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert len(retries) >= 2, "it retried within the timeout"
    assert elapsed < 1.5, f"no attempt or wait outlived the 1 s timeout ({elapsed:.2f} s)"


def test_streams_are_never_retried() -> None:
    retries: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.01, on_retry=retries.append)
    with Client(f"127.0.0.1:{free_port()}", "hpk_nobodylistens", retry=policy) as client:
        stream = client.events.StreamEvents(events_pb2.StreamEventsRequest(), timeout=10)
        with pytest.raises(ApiError) as unavailable:
            next(stream)
    assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
    assert retries == []


def test_backoff_grows_exponentially_within_its_bounds() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=2.0, multiplier=2.0, jitter=0.2)
    for failed in range(1, 12):
        base = min(2.0, 0.1 * 2.0 ** (failed - 1))
        delays = [policy.delay(failed) for _ in range(50)]
        assert all(base * 0.8 <= d <= min(2.0, base * 1.2) for d in delays), (failed, delays)
        assert len(set(delays)) > 1, "jitter spreads the waits"
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial_backoff=3.0, max_backoff=1.0)
    assert RetryPolicy.disabled().max_attempts == 1
