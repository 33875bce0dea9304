"""The whole connector lifecycle through the SDK (the checks of the former
lifecycle_test.py), against a real `hookplane dev`."""

from __future__ import annotations

import grpc
import pytest
from conftest import Server
from google.protobuf import duration_pb2, field_mask_pb2
from hookplane.v1 import connectors_pb2 as pb
from hookplane.v1 import connectors_pb2_grpc

from hookplane_sdk import ApiError, Client, paginate


def test_connector_lifecycle(client: Client, unique: str) -> None:
    spec = pb.Connector(
        display_name="python orders",
        auth=pb.InboundAuth(bearer_token=True),
        perform=pb.Perform(method="POST", url="https://api.example.com/orders"),
    )
    request = pb.CreateConnectorRequest(connector=spec, request_id=f"py-lifecycle-{unique}")
    created = client.connectors.CreateConnector(request)
    assert created.id.startswith("con_")
    assert created.trigger_path == f"/api/v1/connectors/{created.id}/trigger"
    assert created.issued_credentials[0].token.startswith("hpt_"), "the bearer token is issued once"
    replay = client.connectors.CreateConnector(request)
    assert replay == created, "a retried create returns the first response"

    fetched = client.connectors.GetConnector(pb.GetConnectorRequest(id=created.id))
    assert not fetched.issued_credentials, "get never returns plaintext credentials"
    listed = paginate(client.connectors.ListConnectors, pb.ListConnectorsRequest(page_size=10), "connectors")
    assert created.id in [c.id for c in listed]

    patch = pb.Connector(id=created.id, etag=fetched.etag, display_name="python orders v2")
    mask = field_mask_pb2.FieldMask(paths=["display_name"])
    updated = client.connectors.UpdateConnector(pb.UpdateConnectorRequest(connector=patch, update_mask=mask))
    assert updated.display_name == "python orders v2", "update applies the masked field"
    assert updated.perform.url == "https://api.example.com/orders", "fields outside the mask are kept"
    with pytest.raises(ApiError) as stale:
        client.connectors.UpdateConnector(pb.UpdateConnectorRequest(connector=patch, update_mask=mask))
    assert stale.value.code() == grpc.StatusCode.ABORTED, "a stale etag is ABORTED"

    rotated = client.connectors.RotateConnectorTokens(
        pb.RotateConnectorTokensRequest(id=created.id, grace_period=duration_pb2.Duration(seconds=600))
    )
    assert rotated.issued_credentials[0].token != created.issued_credentials[0].token, "rotation mints a new token"
    assert any(t.superseded for t in rotated.tokens), "the old token is kept for the grace period"

    disabled = client.connectors.DisableConnector(pb.DisableConnectorRequest(id=created.id))
    assert disabled.HasField("enabled") and not disabled.enabled, "disable turns the connector off"
    enabled = client.connectors.EnableConnector(pb.EnableConnectorRequest(id=created.id))
    assert enabled.enabled
    client.connectors.DeleteConnector(pb.DeleteConnectorRequest(id=created.id, etag=enabled.etag))
    with pytest.raises(ApiError) as gone:
        client.connectors.GetConnector(pb.GetConnectorRequest(id=created.id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND, "a deleted connector is NOT_FOUND"


def test_invalid_connector_names_every_bad_field(client: Client) -> None:
    bad = pb.Connector(display_name="", auth=pb.InboundAuth(bearer_token=True), perform=pb.Perform(url=""))
    with pytest.raises(ApiError) as invalid:
        client.connectors.CreateConnector(pb.CreateConnectorRequest(connector=bad))
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in invalid.value.violations]
    for field in ("connector.display_name", "connector.perform.url"):
        assert field in fields, f"{field} is named in the violations {fields}"


def test_calls_without_a_key_are_unauthenticated(server: Server) -> None:
    # A plain generated stub without the SDK: nothing adds the key.
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = connectors_pb2_grpc.ConnectorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as anonymous:
            stub.ListConnectors(pb.ListConnectorsRequest())
    assert isinstance(anonymous.value, grpc.Call)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
