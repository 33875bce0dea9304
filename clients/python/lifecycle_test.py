"""The whole connector lifecycle through a Python client generated from
proto/ alone, against a running `hookplane dev`.

Usage: python lifecycle_test.py GENERATED_DIR GRPC_ADDRESS ADMIN_KEY_FILE
Exits non-zero with a message on the first failed expectation.
"""

import pathlib
import sys

import grpc
from google.protobuf import duration_pb2, field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

sys.path.insert(0, sys.argv[1])
from hookplane.v1 import connectors_pb2 as pb  # noqa: E402
from hookplane.v1 import connectors_pb2_grpc as pb_grpc  # noqa: E402


def expect(condition, message):
    if not condition:
        raise SystemExit(f"FAILED: {message}")


def violations(error: grpc.RpcError):
    status = rpc_status.from_call(error)
    expect(status is not None, "INVALID_ARGUMENT carries rich error details")
    fields = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def call_error(fn, request, metadata):
    try:
        fn(request, metadata=metadata)
    except grpc.RpcError as error:
        return error
    raise SystemExit(f"FAILED: expected an error from {fn}")


def main():
    address, key = sys.argv[2], pathlib.Path(sys.argv[3]).read_text().strip()
    metadata = (("authorization", f"Bearer {key}"),)
    stub = pb_grpc.ConnectorServiceStub(grpc.insecure_channel(address))

    spec = pb.Connector(
        display_name="python orders",
        auth=pb.InboundAuth(bearer_token=True),
        perform=pb.Perform(method="POST", url="https://api.example.com/orders"),
    )
    created = stub.CreateConnector(pb.CreateConnectorRequest(connector=spec, request_id="py-1"), metadata=metadata)
    expect(created.id.startswith("con_"), "created connector has an id")
    expect(created.issued_credentials[0].token.startswith("hpt_"), "the bearer token is issued once")
    replay = stub.CreateConnector(pb.CreateConnectorRequest(connector=spec, request_id="py-1"), metadata=metadata)
    expect(replay == created, "a retried create returns the first response")

    fetched = stub.GetConnector(pb.GetConnectorRequest(id=created.id), metadata=metadata)
    expect(not fetched.issued_credentials, "get never returns plaintext credentials")
    listed = stub.ListConnectors(pb.ListConnectorsRequest(page_size=10), metadata=metadata)
    expect(created.id in [c.id for c in listed.connectors], "list includes the connector")

    patch = pb.Connector(id=created.id, etag=fetched.etag, display_name="python orders v2")
    mask = field_mask_pb2.FieldMask(paths=["display_name"])
    updated = stub.UpdateConnector(pb.UpdateConnectorRequest(connector=patch, update_mask=mask), metadata=metadata)
    expect(updated.display_name == "python orders v2", "update applies the masked field")
    stale = call_error(stub.UpdateConnector, pb.UpdateConnectorRequest(connector=patch, update_mask=mask), metadata)
    expect(stale.code() == grpc.StatusCode.ABORTED, f"a stale etag is ABORTED, got {stale.code()}")

    rotated = stub.RotateConnectorTokens(
        pb.RotateConnectorTokensRequest(id=created.id, grace_period=duration_pb2.Duration(seconds=600)),
        metadata=metadata,
    )
    expect(rotated.issued_credentials[0].token != created.issued_credentials[0].token, "rotation mints a new token")
    expect(any(t.superseded for t in rotated.tokens), "the old token is kept for the grace period")

    disabled = stub.DisableConnector(pb.DisableConnectorRequest(id=created.id), metadata=metadata)
    expect(disabled.HasField("enabled") and not disabled.enabled, "disable turns the connector off")
    stub.DeleteConnector(pb.DeleteConnectorRequest(id=created.id, etag=disabled.etag), metadata=metadata)
    gone = call_error(stub.GetConnector, pb.GetConnectorRequest(id=created.id), metadata)
    expect(gone.code() == grpc.StatusCode.NOT_FOUND, "a deleted connector is NOT_FOUND")

    bad = pb.Connector(display_name="", auth=pb.InboundAuth(bearer_token=True), perform=pb.Perform(url=""))
    invalid = call_error(stub.CreateConnector, pb.CreateConnectorRequest(connector=bad), metadata)
    expect(invalid.code() == grpc.StatusCode.INVALID_ARGUMENT, "bad input is INVALID_ARGUMENT")
    fields = violations(invalid)
    for field in ("connector.display_name", "connector.perform.url"):
        expect(field in fields, f"{field} is named in the violations {fields}")

    anonymous = call_error(stub.ListConnectors, pb.ListConnectorsRequest(), ())
    expect(anonymous.code() == grpc.StatusCode.UNAUTHENTICATED, "calls without a key are UNAUTHENTICATED")
    print("python lifecycle: ok")


if __name__ == "__main__":
    main()
