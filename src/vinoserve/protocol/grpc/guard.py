"""Request bytes that are not the expected protobuf get INVALID_ARGUMENT ``Invalid message``.

grpc.aio parses a request before any servicer code runs, and answers a parse failure with UNKNOWN
and a text naming the Python exception class. Every service is registered through
:class:`GuardedRegistry`, which wraps each method once: its deserializer hands a marker to the
method instead of raising, and the method answers the marker with the SPEC error. No servicer
method has to know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import grpc

from vinoserve.errors import StatusCode, VinoserveError
from vinoserve.protocol.grpc.errors import Context, abort

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # the class is generic only in its stubs


class _Unparseable:
    """Stands for request bytes the method's message type could not parse."""


_UNPARSEABLE = _Unparseable()


def _message_name(parse: Callable[[bytes], Any], method: str) -> str:
    # the generated code passes ``SomeRequest.FromString``, a classmethod bound to the message class
    owner = getattr(parse, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", f"request of {method}"))


def guard_handler(handler: Handler, method: str) -> Handler:
    """``handler`` (a unary-unary ``RpcMethodHandler``) answering unparseable bytes with ``Invalid message``.

    Streaming handlers are returned unchanged: neither TF Serving nor KServe v2 has one here.
    """
    # grpc.aio calls the behaviour with its own context and awaits it (the stubs describe grpc's sync API)
    call: Callable[..., Any] | None = handler.unary_unary
    parse = handler.request_deserializer
    if handler.request_streaming or handler.response_streaming or call is None or parse is None:
        return handler
    error = VinoserveError(StatusCode.INVALID_MESSAGE, f"the body is not a valid {_message_name(parse, method)}")

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # DecodeError, bad UTF-8 in a string field, nesting past protobuf's limit
            return _UNPARSEABLE

    async def guarded(request: Any, context: Context) -> Any:
        if request is _UNPARSEABLE:
            await abort(context, error)
        return await call(request, context)

    return grpc.unary_unary_rpc_method_handler(guarded, deserialize, handler.response_serializer)


class _GuardedGenericHandler(grpc.GenericRpcHandler):
    """Looks a method up in the wrapped handler and guards it, once per method."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        self._guarded: dict[str, Handler] = {}  # only methods the service has: bounded

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        found = self._guarded.get(method)
        if found is None:
            handler = self._inner.service(handler_call_details)
            if handler is None:
                return None
            found = self._guarded[method] = guard_handler(handler, method)
        return found


class GuardedRegistry:
    """A server seen by the generated registration functions: every handler added is guarded."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Register each generic handler wrapped by :class:`_GuardedGenericHandler`."""
        self._server.add_generic_rpc_handlers(tuple(_GuardedGenericHandler(h) for h in generic_rpc_handlers))

    def add_registered_method_handlers(self, service_name: str, method_handlers: Mapping[str, Handler]) -> None:
        """Newer generated code registers methods directly: guard each one."""
        self._server.add_registered_method_handlers(
            service_name, {name: guard_handler(h, f"/{service_name}/{name}") for name, h in method_handlers.items()}
        )
