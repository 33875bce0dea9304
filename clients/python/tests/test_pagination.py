"""paginate walks every page of a real List method."""

from __future__ import annotations

import pytest
from hookplane.v1 import connectors_pb2 as pb
from hookplane.v1 import organizations_pb2 as orgs

from hookplane_sdk import Client, paginate


def test_paginate_yields_every_connector_across_pages(client: Client, unique: str) -> None:
    created = {
        client.connectors.CreateConnector(
            pb.CreateConnectorRequest(
                connector=pb.Connector(
                    display_name=f"paged {unique} {n}",
                    auth=pb.InboundAuth(bearer_token=True),
                    perform=pb.Perform(url="https://api.example.com/paged"),
                )
            )
        ).id
        for n in range(5)
    }
    tokens: list[str] = []

    def list_connectors(request: pb.ListConnectorsRequest) -> pb.ListConnectorsResponse:
        tokens.append(request.page_token)
        return client.connectors.ListConnectors(request)

    ids = [c.id for c in paginate(list_connectors, pb.ListConnectorsRequest(page_size=2), "connectors")]

    assert created <= set(ids), "every connector is listed"
    assert len(ids) == len(set(ids)), "no connector is listed twice"
    assert ids == sorted(ids), "the list is ordered by id across pages"
    assert len(tokens) == -(-len(ids) // 2) >= 3, "two per page, one call per page"
    assert tokens[0] == "" and all(tokens[1:]) and len(set(tokens)) == len(tokens)


def test_paginate_fetches_pages_only_as_they_are_consumed(client: Client) -> None:
    calls: list[pb.ListConnectorsRequest] = []

    def list_connectors(request: pb.ListConnectorsRequest) -> pb.ListConnectorsResponse:
        calls.append(request)
        return client.connectors.ListConnectors(request)

    # At least the connector below exists, so the first page has an item.
    client.connectors.CreateConnector(
        pb.CreateConnectorRequest(
            connector=pb.Connector(
                display_name="lazy pages",
                auth=pb.InboundAuth(bearer_token=True),
                perform=pb.Perform(url="https://api.example.com/lazy"),
            )
        )
    )
    items = paginate(list_connectors, pb.ListConnectorsRequest(page_size=1), "connectors")
    assert calls == [], "nothing is fetched before iterating"
    next(items)
    assert len(calls) == 1


def test_paginate_refuses_requests_that_are_not_paged(client: Client) -> None:
    # ListPlans returns every plan at once; it has no page_token to follow.
    with pytest.raises(TypeError, match="ListPlansRequest has no page_token"):
        next(paginate(client.plans.ListPlans, orgs.ListPlansRequest(), "plans"))
