"""Failures arrive as ApiError with the server's code, message and field
violations; keys are checked, and a refused key is never retried."""

from __future__ import annotations

import time

import grpc
import pytest
from conftest import Server
from hookplane.v1 import connectors_pb2 as pb
from hookplane.v1 import events_pb2
from hookplane.v1 import organizations_pb2 as orgs

from hookplane_sdk import ApiError, Client, FieldViolation, RetryEvent, RetryPolicy


def test_invalid_argument_carries_every_field_violation(client: Client) -> None:
    bad = pb.Connector(
        display_name="broken expressions",
        auth=pb.InboundAuth(bearer_token=True),
        mappings=[pb.FieldMapping(name="total", expression="upper($payload.x")],
        perform=pb.Perform(url="https://api.example.com/", body=[pb.BodyField(key="k", value="${ 1 + }")]),
    )
    with pytest.raises(ApiError) as raised:
        client.connectors.CreateConnector(pb.CreateConnectorRequest(connector=bad))
    error = raised.value

    assert isinstance(error, grpc.RpcError), "code catching grpc.RpcError still catches it"
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "connector.mappings[0].expression" in error.message
    assert error.details() == error.message
    by_field = {v.field: v for v in error.violations}
    assert set(by_field) == {"connector.mappings[0].expression", "connector.perform.body[0].value"}
    # Expression errors say where: line:column of the text.
    assert by_field["connector.mappings[0].expression"].description.startswith("1:17: ")
    assert all(isinstance(v, FieldViolation) and v.description for v in error.violations)
    assert error.status is not None and error.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "connector.perform.body[0].value: 1:8: " in str(error)


def test_not_found_has_a_message_and_no_violations(client: Client) -> None:
    with pytest.raises(ApiError) as connector:
        client.connectors.GetConnector(pb.GetConnectorRequest(id="con_doesnotexist0000000000"))
    assert connector.value.code() == grpc.StatusCode.NOT_FOUND
    assert connector.value.message == "connector not found"
    assert connector.value.violations == ()

    with pytest.raises(ApiError) as event:
        client.events.GetEvent(events_pb2.GetEventRequest(id=987_654_321))
    assert event.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_bad_key_is_unauthenticated_and_not_retried(server: Server) -> None:
    retries: list[RetryEvent] = []
    policy = RetryPolicy(max_attempts=5, initial_backoff=0.5, on_retry=retries.append)
    with Client(server.grpc_address, "hpk_wrongwrongwrongwrongwrongwrong12", retry=policy) as stranger:
        started = time.monotonic()
        with pytest.raises(ApiError) as refused:
            stranger.connectors.ListConnectors(pb.ListConnectorsRequest())
        elapsed = time.monotonic() - started
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "API key" in refused.value.message
    assert retries == [], "only UNAVAILABLE is retried"
    assert elapsed < 0.5, f"no backoff was waited ({elapsed:.2f} s)"


def test_with_api_key_acts_as_another_key_on_the_same_connection(client: Client, unique: str) -> None:
    viewer_key = client.api_keys.CreateApiKey(
        orgs.CreateApiKeyRequest(
            api_key=orgs.ApiKey(display_name=f"python viewer {unique}", role=orgs.API_KEY_ROLE_VIEWER),
            request_id=f"py-viewer-{unique}",
        )
    )
    assert viewer_key.key.startswith("hpk_")
    viewer = client.with_api_key(viewer_key.key)

    viewer.connectors.ListConnectors(pb.ListConnectorsRequest(page_size=1))
    with pytest.raises(ApiError) as denied:
        viewer.connectors.CreateConnector(
            pb.CreateConnectorRequest(
                connector=pb.Connector(
                    display_name="viewers cannot write",
                    auth=pb.InboundAuth(bearer_token=True),
                    perform=pb.Perform(url="https://api.example.com/"),
                )
            )
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED

    client.api_keys.DeleteApiKey(orgs.DeleteApiKeyRequest(id=viewer_key.id))
    with pytest.raises(ApiError) as revoked:
        viewer.connectors.ListConnectors(pb.ListConnectorsRequest(page_size=1))
    assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED, "a deleted key is refused at once"

    # Closing the derived client leaves the shared channel open: on a closed
    # channel grpc raises ValueError here.
    viewer.close()
    assert client.api_keys.ListApiKeys(orgs.ListApiKeysRequest()).api_keys


def test_keys_and_addresses_are_checked_before_any_call() -> None:
    with pytest.raises(ValueError, match="API key"):
        Client("127.0.0.1:1", "hpk_abc\n")
    with pytest.raises(ValueError, match="API key"):
        Client("127.0.0.1:1", "")
    with pytest.raises(ValueError, match="not a URL"):
        Client("http://127.0.0.1:50051", "hpk_abc")


def test_every_calling_style_raises_api_error(client: Client) -> None:
    missing = pb.GetConnectorRequest(id="con_doesnotexist0000000000")
    with pytest.raises(ApiError) as with_call:
        client.connectors.GetConnector.with_call(missing)
    future = client.connectors.GetConnector.future(missing)
    assert isinstance(future.exception(), ApiError)
    with pytest.raises(ApiError) as result:
        future.result()
    assert with_call.value.code() == result.value.code() == grpc.StatusCode.NOT_FOUND

    # Successes keep grpc's shapes: a response and its call.
    response, call = client.api_keys.ListApiKeys.with_call(orgs.ListApiKeysRequest())
    assert response.api_keys and call.code() == grpc.StatusCode.OK
    assert client.api_keys.ListApiKeys.future(orgs.ListApiKeysRequest()).result().api_keys
