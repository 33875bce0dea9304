"""Walking the pages of hookplane's List methods (AIP-158)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from google.protobuf.message import Message

_Request = TypeVar("_Request", bound=Message)


def paginate(method: Callable[[_Request], Any], request: _Request, items_field: str) -> Iterator[Any]:
    """Yields every item of a List method, across all its pages.

    `method` is a stub method (`client.connectors.ListConnectors`) or any
    callable taking the request; `items_field` names the repeated field of
    the response holding the items (`"connectors"`). The request is copied,
    not changed: its filter and `page_size` go with every page, as the API
    requires, and each next page is asked for with the previous response's
    `next_page_token` until it is empty. Pages are fetched as the iterator
    is consumed, so stopping early fetches no more.

        for connector in paginate(client.connectors.ListConnectors,
                                  ListConnectorsRequest(page_size=100), "connectors"):
            print(connector.id)
    """
    fields = request.DESCRIPTOR.fields_by_name
    if "page_token" not in fields:
        raise TypeError(f"{request.DESCRIPTOR.full_name} has no page_token: it is not a paged List request")
    page_request = type(request)()
    page_request.CopyFrom(request)
    seen: set[str] = set()
    while True:
        page = method(page_request)
        yield from getattr(page, items_field)
        token: str = page.next_page_token
        if not token:
            return
        # A server answering a token it already gave would make this loop
        # forever; fail loudly instead.
        if token in seen:
            raise RuntimeError(f"the server repeated page token {token!r}; stopping instead of looping")
        seen.add(token)
        setattr(page_request, "page_token", token)
