"""Connect, create a connector, trigger it over HTTP and read its event."""

import json
import os
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
from hookplane.v1 import connectors_pb2 as connectors
from hookplane.v1 import events_pb2 as events

from hookplane_sdk import ApiError, Client, RetryPolicy, paginate

address = os.environ.get("HOOKPLANE_GRPC", "127.0.0.1:50051")
triggers = os.environ.get("HOOKPLANE_HTTP", "http://127.0.0.1:8080")
api_key = Path(os.environ.get("HOOKPLANE_ADMIN_KEY_FILE", ".hookplane/admin-key")).read_text().strip()
target = os.environ.get("TARGET_URL", "http://127.0.0.1:9000/orders")  # any endpoint you run

with Client(address, api_key, retry=RetryPolicy(max_attempts=5, initial_backoff=0.2)) as client:
    connector = client.connectors.CreateConnector(
        connectors.CreateConnectorRequest(
            connector=connectors.Connector(
                display_name="New orders to the ERP",
                auth=connectors.InboundAuth(bearer_token=True),
                mappings=[connectors.FieldMapping(name="order_id", expression="$payload.id")],
                perform=connectors.Perform(
                    method="POST", url=target, body=[connectors.BodyField(key="id", value="$processed.order_id")]
                ),
            ),
            # One key per create: the client's retries resend it, and the
            # server answers a repeat with the first result, not a copy.
            request_id=str(uuid.uuid4()),
        )
    )
    token = connector.issued_credentials[0].token  # shown once: store it

    # Wait until the data-plane nodes serve the new connector.
    rollout = connector.rollout
    while not (rollout.nodes_connected and rollout.nodes_applied == rollout.nodes_connected):
        time.sleep(0.1)
        rollout = client.connectors.GetConnector(connectors.GetConnectorRequest(id=connector.id)).rollout

    call = urllib.request.Request(
        triggers + connector.trigger_path,
        data=json.dumps({"id": 42}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(call) as response:
        answer = json.loads(response.read())
    print("trigger:", answer)  # {'status': 'completed', 'event_id': ..., 'response_code': 200}

    # The event is stored within a second of the answer.
    for _ in range(50):
        try:
            event = client.events.GetEvent(events.GetEventRequest(id=answer["event_id"]))
            break
        except ApiError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                raise
            time.sleep(0.1)
    else:
        raise SystemExit("the event was not recorded")
    print("event:", events.EventStatus.Name(event.status), event.response_code, event.trace.processed)

    # Every connector, however many pages.
    for each in paginate(client.connectors.ListConnectors, connectors.ListConnectorsRequest(page_size=100), "connectors"):
        print("connector:", each.id, each.display_name)

    # Errors carry the server's code, message and field violations.
    try:
        client.connectors.CreateConnector(connectors.CreateConnectorRequest(connector=connectors.Connector()))
    except ApiError as error:
        print("error:", error.code().name, [(v.field, v.description) for v in error.violations])
