"""Byte tunnels for the identity tests: an HTTP CONNECT proxy and a plain TCP forwarder.

    with ConnectProxy(routes={"kubernetes.default.svc:443": ("127.0.0.1", port)}) as proxy:
        ... HTTPS_PROXY=proxy.url ...; proxy.tunnels  # every CONNECT it served

    with TcpForwarder(("127.0.0.1", port), host="127.0.0.2") as fwd: ... fwd.address

Both run an asyncio server in their own thread and only relay bytes: TLS stays end to end
between the client and the API server, so the server's certificate is what the client checks.
`routes` lets the proxy resolve a name the test machine cannot (as a corporate proxy resolves
cluster names the laptop cannot): a client that bypasses the proxy then fails to connect at all,
so a run that succeeds proves all of its traffic went through the proxy. `stop()` (or leaving
the `with`) closes the listener and every open tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self


@dataclass
class Tunnel:
    """One relayed connection: where to (as the client asked), when, and how many bytes."""

    target: str
    opened: float = field(default_factory=time.time)
    closed: float | None = None
    sent: int = 0
    """Bytes from the client to the target."""
    received: int = 0
    """Bytes from the target to the client."""


class _Relay:
    """An asyncio server in a daemon thread; subclasses say where each connection goes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.tunnels: list[Tunnel] = []
        self.refused: list[str] = []
        """CONNECT targets it could not reach or did not know (a 502 was answered)."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()

    def start(self) -> Self:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, self.host, 0), self._loop
        ).result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def snapshot(self) -> list[Tunnel]:
        """The tunnels so far (copies: safe to read while the relay runs)."""
        with self._lock:
            return [Tunnel(t.target, t.opened, t.closed, t.sent, t.received) for t in self.tunnels]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _relay(
        self,
        target: str,
        address: tuple[str, int],
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        connected: bytes = b"",
    ) -> None:
        """Connect to address, answer `connected` to the client, then pump both ways."""
        reader, writer = client
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(*address), 10)
        except (OSError, TimeoutError):
            self.refused.append(target)
            if connected:
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        tunnel = Tunnel(target)
        with self._lock:
            self.tunnels.append(tunnel)
        self._writers.add(up_writer)
        if connected:
            writer.write(connected)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, tunnel, "sent"),
                self._pump(up_reader, writer, tunnel, "received"),
            )
        finally:
            self._writers.discard(up_writer)
            tunnel.closed = time.time()

    @staticmethod
    async def _pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, tunnel: Tunnel, counter: str
    ) -> None:
        try:
            while chunk := await src.read(65536):
                dst.write(chunk)
                setattr(tunnel, counter, getattr(tunnel, counter) + len(chunk))
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.close()


class ConnectProxy(_Relay):
    """An HTTP proxy that serves CONNECT only (what clients use for https:// through a proxy).

    `routes` maps "host:port" as the client asks for it to the address to dial instead; other
    targets are dialled as asked."""

    def __init__(self, routes: dict[str, tuple[str, int]] | None = None) -> None:
        super().__init__("127.0.0.1")
        self.routes = dict(routes or {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                self.refused.append(f"{method} {target}")
                writer.close()
                return
            host, _, port = target.rpartition(":")
            address = self.routes.get(target, (host.strip("[]"), int(port)))
            ok = b"HTTP/1.1 200 Connection established\r\n\r\n"
            await self._relay(target, address, (reader, writer), ok)
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
            writer.close()
        finally:
            self._writers.discard(writer)


class TcpForwarder(_Relay):
    """Every connection to (host, port) is relayed to `target`, byte for byte."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.target = target

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._relay(f"{self.target[0]}:{self.target[1]}", self.target, (reader, writer))
        finally:
            self._writers.discard(writer)
