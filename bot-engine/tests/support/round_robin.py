"""A TCP round-robin proxy standing in for the load balancer in front of several API processes.

Each accepted connection goes to the next backend in turn and its bytes are copied both ways
untouched, so HTTP keep-alive connections and WebSocket upgrades pass as they would through
an ALB (which balances per request; here a connection is the unit, so a client spreads its
load by opening several). Counts, per backend, the connections it was given and the bytes
it sent, for the test's report.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass
class Backend:
    host: str
    port: int
    connections: int = 0
    bytes_in: int = 0  # client → backend
    bytes_out: int = 0  # backend → client


class RoundRobinProxy:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        assert backends, "a proxy needs at least one backend"
        self.backends = [Backend(host, port) for host, port in backends]
        self._turn = itertools.cycle(range(len(self.backends)))
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()  # both ends of every open connection
        self.refused = 0  # connections whose backend could not be reached

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/connect"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def aclose(self) -> None:
        """Stop accepting and cut every connection still open: their copies then end by
        themselves (a cancelled connection task is logged as an error by asyncio)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._sessions:
            _done, stuck = await asyncio.wait(self._sessions, timeout=5)
            for session in stuck:
                session.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        session = asyncio.current_task()
        assert session is not None
        self._sessions.add(session)
        try:
            await self._relay(client_r, client_w)
        finally:
            self._sessions.discard(session)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        backend = self.backends[next(self._turn)]
        backend.connections += 1
        writers = [client_w]
        self._writers.add(client_w)
        try:
            try:
                upstream_r, upstream_w = await asyncio.open_connection(backend.host, backend.port)
            except OSError:
                self.refused += 1
                return
            writers.append(upstream_w)
            self._writers.add(upstream_w)
            await asyncio.gather(
                _copy(client_r, upstream_w, backend, inbound=True),
                _copy(upstream_r, client_w, backend, inbound=False),
            )
        finally:
            # All closed before any is awaited: a cancelled wait must not leave one open.
            for writer in writers:
                writer.close()
                self._writers.discard(writer)
            with contextlib.suppress(OSError):
                for writer in writers:
                    await writer.wait_closed()


async def _copy(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, backend: Backend, *, inbound: bool
) -> None:
    """Copy until the source ends, then pass the end on (a half-close, as TCP has it)."""
    try:
        while chunk := await source.read(CHUNK):
            if inbound:
                backend.bytes_in += len(chunk)
            else:
                backend.bytes_out += len(chunk)
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except OSError:  # reset by either side: the other side's copy ends on its own
        sink.close()


@asynccontextmanager
async def round_robin(backends: list[tuple[str, int]]) -> AsyncIterator[RoundRobinProxy]:
    proxy = RoundRobinProxy(backends)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.aclose()
