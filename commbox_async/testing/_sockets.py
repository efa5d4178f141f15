"""Loopback sockets for the faults no server can answer: refused and never-completing connects."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Callable

__all__ = ["Blackhole", "Listener", "unused_port"]


def unused_port(host: str = "127.0.0.1") -> int:
    """A loopback port with nothing listening on it: connecting is refused by the OS.

    The port was free a moment ago; another process could take it, which on loopback in a
    test run is unlikely enough to ignore.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


class Blackhole:
    """A loopback port where connecting never completes (a host that drops SYNs).

    A listening socket that never accepts, with its accept queue filled by connections of its
    own: the kernel then drops further SYNs, so a client's connect waits until its timeout.
    Use as a context manager; ``url`` is ``http://host:port``.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._fillers: list[socket.socket] = []
        self.port = 0

    def __enter__(self) -> Blackhole:
        self._listener.bind((self.host, 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        for _ in range(3):  # a backlog of 0 admits one or two; the rest wait in SYN_SENT
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((self.host, self.port))
            self._fillers.append(filler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for filler in self._fillers:
            filler.close()
        self._fillers.clear()
        self._listener.close()

    @property
    def url(self) -> str:
        """The base URL of the port that swallows connections."""
        return f"http://{self.host}:{self.port}"


class Listener:
    """A listening socket and its accept loop, which ``refuse`` closes and later reopens.

    The socket and its accept loop are ours rather than a TCPSite's, so that the open
    connections carry on while new ones are refused. (Closing an asyncio Server instead races
    with its pending accepts and leaks their sockets.) Each accepted socket is handed to
    ``protocol_factory`` (an aiohttp ``web.Server``), after a TLS handshake when
    ``ssl_context`` is given.
    """

    def __init__(
        self,
        host: str,
        port: int,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self._factory = protocol_factory
        self._ssl = ssl_context
        #: How many times ``refuse`` closed the listening socket.
        self.refusals = 0
        self._socket: socket.socket | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._reopen_task: asyncio.Task[None] | None = None
        self._refuse_until = 0.0

    @property
    def listening(self) -> bool:
        return self._socket is not None

    def open(self) -> None:
        """Listen on ``host:port``; a port of 0 becomes the one the OS picked."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM
        )[0]
        listener = socket.socket(family, kind, proto)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(address)
            listener.listen(512)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self.port = listener.getsockname()[1]
        self._socket = listener
        # A plain reader callback accepts synchronously, so closing the listener can never
        # strand a socket that was accepted but not yet handed to aiohttp.
        asyncio.get_running_loop().add_reader(listener.fileno(), self._on_acceptable, listener)

    async def close(self) -> None:
        """Stop listening for good (a refuse window in progress ends too)."""
        if self._reopen_task is not None:
            self._reopen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reopen_task
            self._reopen_task = None
        await self._close_socket()

    def refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds``: connections opened meanwhile are refused."""
        self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)
        if self._reopen_task is not None:
            return  # already refusing; the window was extended
        self.refusals += 1
        self._reopen_task = asyncio.get_running_loop().create_task(self._refuse_window())

    def _on_acceptable(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(64):
            try:
                conn, _ = listener.accept()
            except OSError:  # nothing left to accept (BlockingIOError) or a client gave up
                return
            conn.setblocking(False)
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(self._adopt(conn))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._ssl is None:
                await loop.connect_accepted_socket(self._factory, conn)
                return
            try:
                # A bounded handshake: closing the server waits for the sockets being adopted.
                await loop.connect_accepted_socket(
                    self._factory, conn, ssl=self._ssl, ssl_handshake_timeout=10.0
                )
            except (ssl.SSLError, ConnectionError, TimeoutError):
                # A client that refused our certificate, or left: the client sees its error.
                conn.close()
        except BaseException:
            conn.close()
            raise

    async def _close_socket(self) -> None:
        listener, self._socket = self._socket, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener.fileno())
            listener.close()  # the connections it accepted are left alone
        if self._adopting:
            await asyncio.gather(*self._adopting, return_exceptions=True)

    async def _refuse_window(self) -> None:
        await self._close_socket()
        # ``refuse`` may extend the window while this sleeps, hence the loop.
        while True:
            remaining = self._refuse_until - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            try:
                self.open()
            except OSError:  # the port is not free again yet; try once more shortly
                self._refuse_until = time.monotonic() + 0.01
                continue
            break
        self._reopen_task = None
