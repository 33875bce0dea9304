"""Errors of API calls, keeping the server's field violations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

if TYPE_CHECKING:
    from grpc import _Metadata


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request, as the server named it.

    `field` is a path into the request (`connector.perform.url`,
    `connector.mappings[0].expression`); `description` says what is wrong,
    with the position inside an expression when there is one.
    """

    field: str
    description: str


class ApiError(grpc.RpcError):
    """A call that ended with a non-OK status.

    Every call made through `hookplane_sdk.Client` raises this instead of
    grpc's own error. It still derives from `grpc.RpcError` and keeps grpc's
    `code()` and `details()`, so code written against plain grpc stubs keeps
    working; `message` and `violations` are what the server said, readably.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        status: status_pb2.Status | None = None,
        trailing_metadata: _Metadata = (),
    ) -> None:
        self._code = code
        self.message = message
        #: For INVALID_ARGUMENT: every invalid field (empty otherwise).
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        #: The whole `google.rpc.Status` the server sent, for detail types
        #: other than BadRequest; None when it sent none.
        self.status = status
        self._trailing_metadata = trailing_metadata
        super().__init__(str(self))

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ApiError:
        """The ApiError of an error raised by a plain grpc stub.

        For calls not made through `Client` (which converts by itself), and
        for streams read from such stubs.
        """
        if isinstance(error, ApiError):
            return error
        if not isinstance(error, grpc.Call):
            # grpc raises bare RpcErrors only for failures inside the client
            # itself (an interceptor's exception); there is no status to read.
            return cls(grpc.StatusCode.UNKNOWN, str(error))
        status: status_pb2.Status | None
        try:
            status = rpc_status.from_call(error)
        except ValueError:
            # The rich status disagrees with the call's own code or message
            # (a proxy rewrote one of them): trust the call, drop the details.
            status = None
        return cls(
            error.code(),
            error.details() or "",
            _violations(status),
            status=status,
            trailing_metadata=error.trailing_metadata() or (),
        )

    def code(self) -> grpc.StatusCode:
        """The gRPC status code, as `grpc.Call.code()` gives it."""
        return self._code

    def details(self) -> str:
        """The status message, under grpc's name for it."""
        return self.message

    # grpc's type stubs give RpcError.trailing_metadata another return type
    # than Call.trailing_metadata, though grpc returns the same tuples from
    # both; this follows Call's, which is what callers index into.
    def trailing_metadata(self) -> _Metadata:  # type: ignore[override]
        """The call's trailing metadata, rich status details included."""
        return self._trailing_metadata

    def __str__(self) -> str:
        text = f"{self._code.name}: {self.message}"
        if self.violations:
            text += " (" + "; ".join(f"{v.field}: {v.description}" for v in self.violations) + ")"
        return text

    def __repr__(self) -> str:
        return f"ApiError({self._code.name}, {self.message!r}, violations={list(self.violations)!r})"


def _violations(status: status_pb2.Status | None) -> list[FieldViolation]:
    if status is None:
        return []
    found: list[FieldViolation] = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        # Unpack is False for details of other types (ErrorInfo, ...).
        if detail.Unpack(bad):
            found.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return found
