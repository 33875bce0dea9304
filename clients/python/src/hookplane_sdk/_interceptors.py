"""Client interceptors: the API key, retries, and errors as ApiError.

`Client` stacks them outermost first: errors, retries, auth. Retries sit
inside the error mapping so they see grpc's own outcomes, and outside auth
so each attempt is authenticated like the first.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import grpc

from ._errors import ApiError
from ._retry import RetryEvent, RetryPolicy

if TYPE_CHECKING:
    # What a continuation returns, as grpc's type stubs name it. They are
    # typing-only classes no runtime class can derive from, hence the casts
    # where this module returns its own Call objects.
    from grpc import _CallFuture, _CallIterator, _Metadata

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")

if TYPE_CHECKING:
    _FutureBase = grpc.Future[Any]
else:
    # grpc.Future is generic only in its type stubs.
    _FutureBase = grpc.Future


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """ClientCallDetails as grpc builds them: a namedtuple that is also the ABC."""


def _details(details: grpc.ClientCallDetails, **changes: Any) -> grpc.ClientCallDetails:
    # grpc passes its own private namedtuple; rebuilding it is the documented
    # way to change a field. Fields an older grpc leaves out read as None.
    fields = {name: getattr(details, name, None) for name in _CallDetails._fields}
    fields.update(changes)
    return _CallDetails(**fields)


class AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Sends `authorization: Bearer <key>` with every call, of every kind.

    The client's key replaces any `authorization` entry a caller passed, so
    a call can never go out under a key other than the client's (use
    `Client.with_api_key` to act as someone else).
    """

    def __init__(self, api_key: str) -> None:
        self._header = ("authorization", f"Bearer {api_key}")

    def __repr__(self) -> str:
        return "AuthInterceptor(<redacted>)"

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [item for item in (details.metadata or ()) if item[0].lower() != "authorization"]
        metadata.append(self._header)
        return _details(details, metadata=tuple(metadata))

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallFuture[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallFuture[_Response]:
        return continuation(self._with_key(client_call_details), request)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallIterator[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallIterator[_Response]:
        return continuation(self._with_key(client_call_details), request)

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[_Request]], _CallFuture[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Request],
    ) -> _CallFuture[_Response]:
        return continuation(self._with_key(client_call_details), request_iterator)

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Iterator[_Request]], _CallIterator[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[_Request],
    ) -> _CallIterator[_Response]:
        return continuation(self._with_key(client_call_details), request_iterator)


class RetryInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Repeats unary calls that ended UNAVAILABLE, as `RetryPolicy` says.

    Only unary calls: a stream may have delivered messages before failing,
    and repeating it would hand them to the caller twice.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallFuture[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallFuture[_Response]:
        policy = self._policy
        timeout = client_call_details.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 1
        while True:
            details = client_call_details
            if deadline is not None:
                # Every attempt gets what is left of the caller's timeout, so
                # the retries never stretch a call past it.
                details = _details(client_call_details, timeout=max(0.0, deadline - time.monotonic()))
            outcome = continuation(details, request)
            code = outcome.code()
            if code is not grpc.StatusCode.UNAVAILABLE or attempt >= policy.max_attempts:
                return outcome
            delay = policy.delay(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                return outcome
            if policy.on_retry is not None:
                policy.on_retry(
                    RetryEvent(
                        method=client_call_details.method,
                        attempt=attempt,
                        code=code,
                        message=outcome.details() or "",
                        delay=delay,
                    )
                )
            time.sleep(delay)
            attempt += 1


class ErrorInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Turns the final failure of a call into an ApiError.

    For unary calls the returned outcome raises ApiError from `result()`
    (which is what a blocking call and `with_call` invoke); for streams the
    iterator raises it from `next()`. Judging a `.future()` call means
    waiting for it, so through this client it is done when it is returned.
    """

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallFuture[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallFuture[_Response]:
        outcome = continuation(client_call_details, request)
        # `exception()` is the one check that fits every outcome grpc hands
        # an interceptor: a finished call, a failed one (itself an RpcError),
        # or a future (an RpcError even when it succeeds).
        error = outcome.exception()
        if isinstance(error, grpc.RpcError):
            return cast("_CallFuture[_Response]", _FailedCall(ApiError.from_rpc_error(error)))
        return outcome

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, _Request], _CallIterator[_Response]],
        client_call_details: grpc.ClientCallDetails,
        request: _Request,
    ) -> _CallIterator[_Response]:
        return cast("_CallIterator[_Response]", _MappedStream(continuation(client_call_details, request)))


class _FailedCall(grpc.Call, _FutureBase):
    """A finished unary call whose result is an ApiError."""

    def __init__(self, error: ApiError) -> None:
        self._error = error

    def result(self, timeout: float | None = None) -> Any:
        raise self._error

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._error

    def traceback(self, timeout: float | None = None) -> Any:
        return self._error.__traceback__

    def add_done_callback(self, fn: Callable[[grpc.Future[Any]], None]) -> None:
        fn(self)

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def code(self) -> grpc.StatusCode:
        return self._error.code()

    def details(self) -> str:
        return self._error.message

    def initial_metadata(self) -> _Metadata:
        return ()

    def trailing_metadata(self) -> _Metadata:
        return self._error.trailing_metadata()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class _MappedStream(grpc.Call, Iterator[_Response], Generic[_Response]):
    """A server stream whose failures surface as ApiError."""

    def __init__(self, call: _CallIterator[_Response]) -> None:
        self._call = call

    def __iter__(self) -> _MappedStream[_Response]:
        return self

    def __next__(self) -> _Response:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            raise ApiError.from_rpc_error(error) from None

    def code(self) -> grpc.StatusCode:
        return self._call.code()

    def details(self) -> str:
        return self._call.details()

    def initial_metadata(self) -> _Metadata:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> _Metadata:
        return self._call.trailing_metadata()

    def cancel(self) -> bool:
        return self._call.cancel()

    def is_active(self) -> bool:
        return self._call.is_active()

    def time_remaining(self) -> float:
        return self._call.time_remaining()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return self._call.add_callback(callback)
