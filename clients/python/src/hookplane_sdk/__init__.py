"""Typed Python client for the hookplane gRPC API.

    from hookplane_sdk import Client, paginate
    from hookplane.v1 import connectors_pb2 as connectors

    with Client("127.0.0.1:50051", api_key) as client:
        for c in paginate(client.connectors.ListConnectors,
                          connectors.ListConnectorsRequest(page_size=100), "connectors"):
            print(c.id, c.display_name)

Messages and service stubs are generated from proto/ into the `hookplane.v1`
package (`hookplane.v1.connectors_pb2`, ...); this package wraps them with
the API key, retries of UNAVAILABLE, pagination and `ApiError`.
"""

try:
    import hookplane.v1.connectors_pb2  # noqa: F401
except ModuleNotFoundError as error:  # pragma: no cover - only before generating
    raise ImportError(
        "hookplane.v1 is missing: generate it from proto/ with `python clients/python/generate.py` "
        "before installing or importing hookplane_sdk"
    ) from error

from ._client import Client
from ._errors import ApiError, FieldViolation
from ._pagination import paginate
from ._retry import RetryEvent, RetryPolicy

__version__ = "0.1.0"

__all__ = ["ApiError", "Client", "FieldViolation", "RetryEvent", "RetryPolicy", "paginate"]
