"""The engine's WebSocket protocol for uvicorn: uvicorn's own (websockets, sans-I/O) with the
two things a trading dashboard's server needs that ASGI cannot express.

- **Abort a stalled client.** A client that stops reading fills the socket buffer; uvicorn
  then blocks every send to it, the closing frame included, and `transport.close()` would wait
  for a flush that never comes. The connection's ASGI scope carries `jadetrade.abort`, which
  drops the transport at once; the hub calls it when a closing frame cannot be delivered.
- **Write without a task switch.** `jadetrade.send_nowait` writes a text frame at once when
  the socket takes it (its buffer is below the high-water mark), so a broadcast to thousands
  of sockets costs one frame write each instead of a queue and a task wake-up each; the hub
  queues only for clients that are behind.
- **Close with 1001 (going away) on shutdown**, the code a client should read as "reconnect
  elsewhere", where uvicorn sends 1012. A client that cannot take even that is aborted.
- **Refuse a text message that is not UTF-8 quietly**: closed with 1007 as uvicorn does, but
  without uvicorn's error-level traceback, which any client could write into the logs at will.

`jadetrade serve` / `run` use it; under another server the hub still works, without aborts.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.http11 import Request

from app.api.websocket import ABORT_EXTENSION, SEND_NOWAIT_EXTENSION
from app.logging.logger import get_logger

GOING_AWAY = 1001
INVALID_DATA = 1007
log = get_logger("websocket")


class EngineWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake went ahead (the ASGI task has not run yet)
            scope["extensions"][ABORT_EXTENSION] = self.transport.abort
            scope["extensions"][SEND_NOWAIT_EXTENSION] = self.send_text_nowait

    def send_text_nowait(self, text: str) -> bool:
        """Write one text frame now if the socket takes it without waiting; False when it
        would have to wait (or is closing), and the caller queues the message instead."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("ws_invalid_text_refused", reason="not UTF-8")
                self.conn.send_close(INVALID_DATA)
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def shutdown(self) -> None:
        if self.close_sent or not self.handshake_complete:
            super().shutdown()
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
        self.conn.send_close(GOING_AWAY, "server shutting down")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.writable.is_set():
            self.transport.close()
        else:  # the client stopped reading: the frame will never leave the buffer
            self.transport.abort()
