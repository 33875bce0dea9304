"""A connector triggered over HTTP performs against a real target, and its
event is read back through EventService."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from conftest import Server
from hookplane.v1 import connectors_pb2 as pb
from hookplane.v1 import events_pb2
from hookplane_dev import Target, eventually

from hookplane_sdk import ApiError, Client, paginate


def create_live_connector(client: Client, target: Target, name: str) -> pb.Connector:
    """A connector mapping an order to the target, once every node serves it."""
    created = client.connectors.CreateConnector(
        pb.CreateConnectorRequest(
            connector=pb.Connector(
                display_name=name,
                auth=pb.InboundAuth(bearer_token=True),
                mappings=[
                    pb.FieldMapping(name="order_id", expression="$payload.id"),
                    pb.FieldMapping(name="email", expression="lower($payload.customer.email)"),
                ],
                perform=pb.Perform(
                    method="POST",
                    url=f"{target.url}/orders/$payload.id",
                    headers=[pb.NamedTemplate(name="X-Source", value="hookplane-python")],
                    body=[
                        pb.BodyField(key="order.id", value="$processed.order_id"),
                        pb.BodyField(key="order.email", value="$processed.email"),
                    ],
                ),
            )
        )
    )

    def live() -> bool | None:
        # The connector's rollout says when the node applied the config
        # version carrying it; before that its trigger URL answers 404.
        rollout = client.connectors.GetConnector(pb.GetConnectorRequest(id=created.id)).rollout
        return True if rollout.nodes_connected > 0 and rollout.nodes_applied == rollout.nodes_connected else None

    eventually(live, what=f"connector {created.id} to reach every node")
    return created


def trigger(server: Server, connector: pb.Connector, payload: object) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        server.http_base + connector.trigger_path,
        data=json.dumps(payload).encode(),
        headers={
            "Authorization": f"Bearer {connector.issued_credentials[0].token}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        status: int = response.status
        answer: dict[str, object] = json.loads(response.read())
    return status, answer


def get_event(client: Client, event_id: int) -> events_pb2.Event:
    def recorded() -> events_pb2.Event | None:
        # The trigger answers once the node recorded the event; the control
        # plane stores it within a second. NOT_FOUND until then.
        try:
            return client.events.GetEvent(events_pb2.GetEventRequest(id=event_id))
        except ApiError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    return eventually(recorded, what=f"event {event_id} to be readable")


def test_trigger_performs_the_mapped_request_and_records_the_event(
    client: Client, server: Server, target: Target, unique: str
) -> None:
    connector = create_live_connector(client, target, f"orders {unique}")

    status, answer = trigger(server, connector, {"id": 42, "customer": {"email": "Ann@Example.COM"}})

    assert status == 200
    assert answer["status"] == "completed"
    assert answer["response_code"] == 200
    received = target.next_request()
    assert (received.method, received.path) == ("POST", "/orders/42")
    assert received.headers["x-source"] == "hookplane-python"
    assert received.json() == {"order": {"id": 42, "email": "ann@example.com"}}

    event_id = answer["event_id"]
    assert isinstance(event_id, int)
    event = get_event(client, event_id)
    assert event.connector_id == connector.id
    assert event.status == events_pb2.EVENT_STATUS_COMPLETED
    assert event.HasField("response_code") and event.response_code == 200
    assert json.loads(event.trace.payload) == {"id": 42, "customer": {"email": "Ann@Example.COM"}}
    assert json.loads(event.trace.processed) == {"order_id": 42, "email": "ann@example.com"}
    assert [a.status for a in event.trace.perform_attempts] == [200]
    assert "Bearer" not in event.trace.request.headers.get("authorization", ""), "credentials are redacted"


def test_events_paginate_with_their_filter_on_every_page(
    client: Client, server: Server, target: Target, unique: str
) -> None:
    connector = create_live_connector(client, target, f"paged events {unique}")
    ids: list[int] = []
    for n in range(3):
        status, answer = trigger(server, connector, {"id": n, "customer": {"email": f"c{n}@example.com"}})
        assert status == 200
        event_id = answer["event_id"]
        assert isinstance(event_id, int)
        ids.append(event_id)
    for event_id in ids:
        get_event(client, event_id)

    pages: list[events_pb2.ListEventsRequest] = []

    def list_events(request: events_pb2.ListEventsRequest) -> events_pb2.ListEventsResponse:
        pages.append(events_pb2.ListEventsRequest.FromString(request.SerializeToString()))
        return client.events.ListEvents(request)

    request = events_pb2.ListEventsRequest(
        filter=events_pb2.EventFilter(connector_id=connector.id), page_size=2
    )
    events = list(paginate(list_events, request, "events"))

    # Only this connector's events, newest first, though other tests' events
    # share the organization: the filter went with every page.
    assert [e.id for e in events] == sorted(ids, reverse=True)
    assert len(pages) == 2
    assert pages[0].page_token == "" and pages[1].page_token != ""
    assert all(p.filter.connector_id == connector.id and p.page_size == 2 for p in pages)
    assert request.page_token == "", "the caller's request is not changed"


def test_stream_events_sees_a_trigger_through_the_authenticated_client(
    client: Client, server: Server, target: Target, unique: str
) -> None:
    connector = create_live_connector(client, target, f"streamed {unique}")
    stream = client.events.StreamEvents(
        events_pb2.StreamEventsRequest(filter=events_pb2.EventFilter(connector_id=connector.id)), timeout=60
    )
    received: list[events_pb2.Event] = []

    def read_one(events: Iterator[events_pb2.Event]) -> None:
        received.append(next(events))

    reader = threading.Thread(target=read_one, args=(stream,))
    reader.start()
    try:
        # The stream only carries events recorded after it opened, and
        # opening is asynchronous; trigger until one arrives.
        def streamed() -> bool | None:
            trigger(server, connector, {"id": 7, "customer": {"email": "s@example.com"}})
            reader.join(timeout=1.0)
            return True if received else None

        eventually(streamed, what="an event on the stream")
    finally:
        stream.cancel()
        reader.join(timeout=10)
    assert received[0].connector_id == connector.id
    assert received[0].status == events_pb2.EVENT_STATUS_COMPLETED


def test_a_stream_with_a_bad_key_raises_api_error(server: Server) -> None:
    with Client(server.grpc_address, "hpk_not_a_real_key") as stranger:
        stream = stranger.events.StreamEvents(events_pb2.StreamEventsRequest(), timeout=30)
        with pytest.raises(ApiError) as refused:
            next(stream)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
