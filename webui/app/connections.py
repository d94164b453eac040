"""Connection-level limits under the ASGI app, where no middleware can see: how many
connections one client address may hold open, and how long a client may take to
send a request's headers (uvicorn times out only idle keep-alive connections, so a
client that sends half a header line would hold its connection for ever).

uvicorn's h11 protocol is extended rather than replaced: h11 parses and bounds the
headers (uvicorn's h11_max_incomplete_event_size), this adds the two limits."""
from __future__ import annotations

import asyncio
import logging
from collections import Counter

log = logging.getLogger(__name__)


def _too_many(limit: int) -> bytes:
    body = f"too many connections from your address (at most {limit}; --max-connections-per-client)\n".encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def bounded_h11_protocol(max_per_client: int, header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's H11Protocol with both limits; pass it to uvicorn as `http=`.
    Each call makes a class with its own count of connections per address."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    open_per_client: Counter[str] = Counter()

    class BoundedH11Protocol(H11Protocol):
        _address: str | None = None
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else None
            if address is not None:
                if open_per_client[address] >= max_per_client:
                    log.warning("refused a connection from %s: it already holds %d", address, max_per_client)
                    transport.write(_too_many(max_per_client))
                    transport.close()
                    return
                open_per_client[address] += 1
                self._address = address
            self._arm_header_timer()

        def connection_lost(self, exc) -> None:
            self._forget()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self, event) -> None:
            self._forget()  # the connection now belongs to the WebSocket protocol, which never tells this one
            super().handle_websocket_upgrade(event)

        def _forget(self) -> None:
            if self._address is not None:
                open_per_client[self._address] -= 1
                if open_per_client[self._address] <= 0:
                    del open_per_client[self._address]
                self._address = None
            self._disarm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()  # the next request on this connection gets its own deadline

        def _arm_header_timer(self) -> None:
            self._disarm_header_timer()
            if not self.transport.is_closing():
                self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            # IDLE: the client has not finished a request's headers (a body or a
            # response in progress is not this timer's business).
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()

    return BoundedH11Protocol
