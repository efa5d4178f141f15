"""A tiny HTTP forward proxy on a loopback port (port 0), for the tests of ``proxy=``.

It reads each connection's first request line (``GET http://host:port/path HTTP/1.1``, the
form a client sends to a proxy), remembers it, connects to that host and pipes the bytes both
ways; later requests on the same connection are piped as they come. It forwards plain
``http`` only (``CONNECT`` is answered 405): enough to prove the requests went through it.
"""

from __future__ import annotations

import asyncio
import contextlib

from yarl import URL


class ForwardProxy:
    """``async with ForwardProxy() as proxy``: ``proxy.url`` to use, ``proxy.requests`` seen."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            line = await reader.readline()
            method, target, _ = line.decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            self.requests.append(f"{method} {target}")
            url = URL(target)
            up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
            up_writer.write(line)
            await asyncio.gather(_pipe(reader, up_writer, self), _pipe(up_reader, writer, None))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pipes.discard(task)
            writer.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, proxy: ForwardProxy | None
) -> None:
    """Copy until EOF; on the client's side, note each later request line that passes."""
    try:
        while chunk := await reader.read(65536):
            if proxy is not None and chunk[:4] in (b"GET ", b"POST"):
                proxy.requests.append(
                    chunk.split(b"\r\n", 1)[0].decode("latin-1").rsplit(" ", 1)[0]
                )
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
