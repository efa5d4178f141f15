"""A headless Chromium driven over the DevTools protocol (aiohttp websockets, no selenium).

    async with Chromium.launch() as browser:
        await browser.navigate("http://127.0.0.1:8090/live")
        text = await browser.evaluate("document.title")

``find_chromium()`` is None when no browser is installed (the tests that need one skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import shutil
import tempfile
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["Chromium", "find_chromium"]

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    return None


class Chromium:
    """One headless browser process with one page, and a websocket to that page."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._process: asyncio.subprocess.Process | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="commbox-e2e-")
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._drainer: asyncio.Task[None] | None = None

    @classmethod
    def launch(cls, binary: str | None = None) -> Chromium:
        found = binary or find_chromium()
        if found is None:
            raise RuntimeError("no chromium on PATH")
        return cls(found)

    async def __aenter__(self) -> Chromium:
        self._process = await asyncio.create_subprocess_exec(
            self.binary,
            "--headless=new",
            "--no-sandbox",  # root in a container has no user namespace for the sandbox
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={self._profile.name}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LANG": "C"},
        )
        try:
            browser_url = await asyncio.wait_for(self._devtools_url(), 60)
            port = browser_url.split("//", 1)[1].split("/", 1)[0]
            self._session = aiohttp.ClientSession()
            async with self._session.get(f"http://{port}/json/list") as response:
                targets = await response.json()
            page = next(t for t in targets if t.get("type") == "page")
            self._socket = await self._session.ws_connect(
                page["webSocketDebuggerUrl"], max_msg_size=0
            )
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _devtools_url(self) -> str:
        assert self._process is not None and self._process.stderr is not None
        while True:
            line = await self._process.stderr.readline()
            if not line:
                raise RuntimeError("chromium exited before its DevTools endpoint was up")
            match = _LISTENING.search(line)
            if match:
                # Keep draining stderr, or a chatty browser blocks on a full pipe.
                self._drainer = asyncio.ensure_future(self._drain())
                return match.group(1).decode()

    async def _drain(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        with contextlib.suppress(Exception):
            while await self._process.stderr.read(65536):
                pass

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except asyncio.TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._drainer is not None:
            await self._drainer
        self._profile.cleanup()

    async def command(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command to the page and return its result."""
        assert self._socket is not None
        ident = next(self._ids)
        await self._socket.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self._socket.receive_json(), 60)
            if message.get("id") != ident:
                continue  # an event, or the answer to an earlier command
            if "error" in message:
                raise RuntimeError(f"{method}: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    async def navigate(self, url: str) -> None:
        await self.command("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.command("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")
