"""When and how often a call that found the server unavailable is retried."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class RetryEvent:
    """Passed to `RetryPolicy.on_retry` before each wait."""

    #: The full method name, e.g. `/hookplane.v1.ConnectorService/GetConnector`.
    method: str
    #: The attempt that failed, from 1.
    attempt: int
    code: grpc.StatusCode
    message: str
    #: Seconds the client waits before the next attempt.
    delay: float


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of unary calls that failed with UNAVAILABLE.

    UNAVAILABLE is what gRPC answers when the server cannot be reached (not
    started yet, restarting, a dropped connection) or is shedding load; no
    other code is retried, since a repeat could not change the answer or
    could apply a write twice. Creates that might be repeated this way
    should carry a `request_id`: the server then returns the first result
    instead of creating a second resource.

    Attempt N+1 waits `initial_backoff * multiplier**(N-1)` seconds, capped at
    `max_backoff`, then spread by +/- `jitter` (a fraction) so that many
    clients losing the same server do not all come back at once. A call's
    `timeout` bounds every attempt and wait together. Streams are never
    retried: their messages may already have been handed to the caller.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    #: Called before each wait, e.g. to log it; never for the final failure.
    on_retry: Callable[[RetryEvent], None] | None = None

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (1 disables retries)")
        if not 0 < self.initial_backoff <= self.max_backoff:
            raise ValueError("backoffs must satisfy 0 < initial_backoff <= max_backoff")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy making exactly one attempt."""
        return cls(max_attempts=1)

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` (from 1) failed."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (failed_attempt - 1))
        return min(self.max_backoff, base * random.uniform(1 - self.jitter, 1 + self.jitter))

    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel options that let the retries reach a server that is back.

        After a failed connection gRPC waits its own reconnect backoff
        (1 s, growing to 120 s) before connecting again, and fails every call
        at once meanwhile; retries at our pace would all land in that window.
        Aligning the channel's backoff with this policy's lets an attempt
        after our wait connect for real.
        """
        return [
            ("grpc.initial_reconnect_backoff_ms", max(1, int(self.initial_backoff * 1000))),
            ("grpc.max_reconnect_backoff_ms", max(1, int(self.max_backoff * 1000))),
        ]
