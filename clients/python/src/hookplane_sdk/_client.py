"""The client: one channel, one API key, a stub per service."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
from hookplane.v1 import (
    connectors_pb2_grpc,
    events_pb2_grpc,
    nodes_pb2_grpc,
    organizations_pb2_grpc,
    secrets_pb2_grpc,
    subscriptions_pb2_grpc,
)

from ._interceptors import AuthInterceptor, ErrorInterceptor, RetryInterceptor
from ._retry import RetryPolicy


class Client:
    """A connection to a hookplane control plane, acting with one API key.

    `address` is a gRPC target, `host:port` (e.g. `127.0.0.1:50051`).
    Every call carries `authorization: Bearer <api_key>`, unary calls that
    find the server UNAVAILABLE are retried as `retry` says, and every
    failure is raised as `ApiError`. The stubs are grpc's own, generated from
    proto/: each method is called with its request message and takes grpc's
    usual `timeout=` (seconds; it bounds the retries too). `.future()` calls
    complete before they return, since failures are judged (and retried)
    inside the call; run calls on threads for concurrency.

    Use it as a context manager, or call `close()`, to release the channel.
    """

    connectors: connectors_pb2_grpc.ConnectorServiceStub
    events: events_pb2_grpc.EventServiceStub
    secrets: secrets_pb2_grpc.SecretServiceStub
    organizations: organizations_pb2_grpc.OrganizationServiceStub
    plans: organizations_pb2_grpc.PlanServiceStub
    api_keys: organizations_pb2_grpc.ApiKeyServiceStub
    nodes: nodes_pb2_grpc.NodeServiceStub
    #: Platform-webhook subscriptions and their delivery log.
    subscriptions: subscriptions_pb2_grpc.SubscriptionServiceStub

    def __init__(
        self,
        address: str,
        api_key: str,
        *,
        retry: RetryPolicy = RetryPolicy(),
        secure: bool = False,
        root_certificates: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Opens a channel to `address` (connecting lazily, on the first call).

        `secure` uses TLS, verified against `root_certificates` (PEM) or the
        system's roots; `options` are extra grpc channel options, which
        win over the reconnect backoff the retry policy sets.
        """
        if "://" in address:
            raise ValueError(f"address is a gRPC target such as 127.0.0.1:50051, not a URL: {address!r}")
        if root_certificates is not None and not secure:
            raise ValueError("root_certificates need secure=True")
        # grpc keeps the first of repeated channel options: the caller's go
        # first so they win over the policy's.
        channel_options = [*options, *retry.channel_options()]
        if secure:
            credentials = grpc.ssl_channel_credentials(root_certificates)
            channel = grpc.secure_channel(address, credentials, options=channel_options)
        else:
            channel = grpc.insecure_channel(address, options=channel_options)
        self._setup(channel, api_key, retry, owns_channel=True)

    def _setup(self, channel: grpc.Channel, api_key: str, retry: RetryPolicy, *, owns_channel: bool) -> None:
        _check_api_key(api_key)
        self._raw_channel = channel
        self._owns_channel = owns_channel
        self._retry = retry
        # The first interceptor is the outermost: see _interceptors.
        self._channel = grpc.intercept_channel(
            channel, ErrorInterceptor(), RetryInterceptor(retry), AuthInterceptor(api_key)
        )
        self.connectors = connectors_pb2_grpc.ConnectorServiceStub(self._channel)
        self.events = events_pb2_grpc.EventServiceStub(self._channel)
        self.secrets = secrets_pb2_grpc.SecretServiceStub(self._channel)
        self.organizations = organizations_pb2_grpc.OrganizationServiceStub(self._channel)
        self.plans = organizations_pb2_grpc.PlanServiceStub(self._channel)
        self.api_keys = organizations_pb2_grpc.ApiKeyServiceStub(self._channel)
        self.nodes = nodes_pb2_grpc.NodeServiceStub(self._channel)
        self.subscriptions = subscriptions_pb2_grpc.SubscriptionServiceStub(self._channel)

    @property
    def channel(self) -> grpc.Channel:
        """The channel with auth, retries and ApiError, for building other stubs."""
        return self._channel

    def with_api_key(self, api_key: str) -> Client:
        """A client on the same connection acting with another key.

        E.g. the operator key mints an organization's first admin key, then
        acts through it. Closing the original closes the shared connection;
        closing this one does nothing.
        """
        other = Client.__new__(Client)
        other._setup(self._raw_channel, api_key, self._retry, owns_channel=False)
        return other

    def close(self) -> None:
        if self._owns_channel:
            self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client(<api key redacted>, retry={self._retry!r})"


def _check_api_key(api_key: str) -> None:
    # grpc would only fail at the first call, with a confusing error about
    # metadata; say what is wrong at construction instead.
    if not api_key or not api_key.isascii() or not api_key.isprintable() or any(c.isspace() for c in api_key):
        raise ValueError("the API key must be non-empty printable ASCII without spaces (read it with .strip())")
