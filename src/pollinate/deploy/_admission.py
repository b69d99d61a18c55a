"""Admission: each kind of call the link serves has its own budget, so no kind starves another.

gRPC's own ``maximum_concurrent_rpcs`` is one count for every call, so 300 streams that
never say hello once filled it and locked out the Control service and new nodes alike.
The link instead keeps a :class:`Gate` per kind of call (Control, registrations, streams
that have not said hello yet, ...) and sizes its thread pool to their sum, so an admitted
call always finds a thread. Gates that anyone may pass also limit the calls from one
address. A call over its kind's budget is refused at once with RESOURCE_EXHAUSTED and a
message that says which limit it hit, and the link logs the refusals of each kind at most
once a minute.

Every handler reads its request itself (``first_request``), within a deadline: a unary
handler that gRPC serves would wait for a request body that never comes on a thread
nobody counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

__all__ = ["Gate", "GatedService", "Pass", "RateLimitedLog", "first_request", "gated"]

log = logging.getLogger("pollinate.link")

LOG_EVERY_S = 60.0
"""Refusals of one kind are logged at most this often (the first one at once)."""


class RateLimitedLog:
    """A warning that may come often: logged at once, then with a count at most each minute.

    A flood of refused calls must not flood the log too.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._logged_at = -LOG_EVERY_S

    def add(self, message: str) -> None:
        """Count one event; log ``message`` and the count if the last line is a minute old."""
        with self._lock:
            self._count += 1
            now = time.monotonic()
            if now - self._logged_at < LOG_EVERY_S:
                return
            count, self._count, self._logged_at = self._count, 0, now
        times = "once" if count == 1 else f"{count} times"
        log.warning("%s (%s since the last such line)", message, times)


class Pass:
    """A call's place in a gate; ``leave`` gives it back (once, however often it is called)."""

    def __init__(self, gate: Gate, host: str) -> None:
        self._gate: Gate | None = gate
        self._host = host

    def leave(self) -> None:
        """Give the place back."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(self._host)


class Gate:
    """At most ``capacity`` calls of one kind at once, and ``per_host`` from one address.

    ``why`` says what a refused caller hit. The limit per address keeps one machine from
    taking every place of a kind that anyone may call.
    """

    def __init__(self, what: str, capacity: int, why: str, per_host: int | None = None) -> None:
        self.capacity = capacity
        self.per_host = capacity if per_host is None else per_host
        self.why = why
        self._what = what
        self._lock = threading.Lock()
        self._inside = 0
        self._hosts: dict[str, int] = {}
        self._refusals = RateLimitedLog()

    def enter(self, context: grpc.ServicerContext) -> Pass:
        """A place for this call until it ends, or abort it with RESOURCE_EXHAUSTED."""
        host = context.peer().rpartition(":")[0]  # "ipv4:10.0.0.5:41234" without the port
        with self._lock:
            full = self._inside >= self.capacity  # said first: it is the limit of all
            crowded = not full and self._hosts.get(host, 0) >= self.per_host
            admitted = not full and not crowded
            if admitted:
                self._inside += 1
                self._hosts[host] = self._hosts.get(host, 0) + 1
        if not admitted:
            why = f"{self.per_host} {self._what} from {host} already" if crowded else self.why
            self._refusals.add(f"refused a call, one of the {self._what}: {why}")
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{why}; retry later")
        place = Pass(self, host)
        if not context.add_callback(place.leave):  # the call already ended
            place.leave()
        return place

    def release(self, host: str) -> None:
        """A call from ``host`` left (``Pass.leave`` calls this)."""
        with self._lock:
            self._inside -= 1
            self._hosts[host] -= 1
            if not self._hosts[host]:
                del self._hosts[host]


def first_request(
    requests: Iterator[bytes], context: grpc.ServicerContext, within_s: float
) -> bytes:
    """A unary call's request, or abort the call if it does not arrive within ``within_s``."""
    timer = threading.Timer(within_s, context.cancel)
    timer.start()
    try:
        return next(requests)
    except (StopIteration, grpc.RpcError):
        context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED, f"no request within {within_s:g} s of the call"
        )
        raise  # abort raises; this keeps the type checker informed
    finally:
        timer.cancel()


Behavior = Callable[[Any, grpc.ServicerContext], Any]
Screen = Callable[[grpc.ServicerContext], None]
"""Aborts a call from a caller who may not make it at all (checked before the gate)."""


def _admit_all(context: grpc.ServicerContext) -> None:
    """The screen that lets every caller through to the gate."""


def gated(
    handler: grpc.RpcMethodHandler, gate: Gate, within_s: float, screen: Screen = _admit_all
) -> grpc.RpcMethodHandler:
    """``handler`` behind ``screen`` then ``gate``, reading a unary request itself.

    The screen comes first, so callers it refuses never take a place at the gate.
    """
    inner: Behavior
    if handler.request_streaming:
        inner = handler.stream_stream if handler.response_streaming else handler.stream_unary
    else:
        unary: Behavior = (
            handler.unary_stream if handler.response_streaming else handler.unary_unary
        )

        def inner(requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
            return unary(first_request(requests, context, within_s), context)

    def behavior(requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        screen(context)
        gate.enter(context)
        return inner(requests, context)

    make = (
        grpc.stream_stream_rpc_method_handler
        if handler.response_streaming
        else grpc.stream_unary_rpc_method_handler
    )
    return make(behavior, handler.request_deserializer, handler.response_serializer)


class GatedService:
    """Every method of a service behind one gate (a gRPC generic handler: it has ``service``)."""

    def __init__(
        self,
        service: grpc.GenericRpcHandler,
        gate: Gate,
        within_s: float,
        screen: Screen | None = None,
    ) -> None:
        self._service = service
        self._gate = gate
        self._within_s = within_s
        self._screen = screen or _admit_all

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        """The service's handler for a call, behind the gate (None: not this service's)."""
        handler = self._service.service(handler_call_details)
        if handler is None:
            return None
        return gated(handler, self._gate, self._within_s, self._screen)
