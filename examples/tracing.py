"""Tracing the client's requests: an aiohttp TraceConfig, and OpenTelemetry on the same session.

    pip install commbox-async opentelemetry-sdk opentelemetry-instrumentation-aiohttp-client
    COMMBOX_TOKEN=... python examples/tracing.py 558355 558356

The client sends through an ``aiohttp.ClientSession``; a session you build yourself can carry
``trace_configs``, and ``AsyncCommbox(session=...)`` sends every attempt (retries included)
through it. Each attempt is one traced request. The token travels in the ``Authorization``
header, which neither trace config below records.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from types import SimpleNamespace

import aiohttp
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import TracerProvider as AnyTracerProvider

from commbox_async import AsyncCommbox

log = logging.getLogger("commbox_app.http")


# --8<-- [start:timing]
def timing_trace_config() -> aiohttp.TraceConfig:
    """Log each attempt's method, path, status and time at INFO; a failed one at WARNING."""

    async def on_request_start(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        ctx.started = asyncio.get_running_loop().time()

    async def on_request_end(
        session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        elapsed = asyncio.get_running_loop().time() - ctx.started
        log.info(
            "%s %s -> %d in %.1f ms",
            params.method,
            params.url.path,  # the path only: the query holds the caller's filters
            params.response.status,
            elapsed * 1000,
        )

    async def on_request_exception(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        log.warning(
            "%s %s failed: %s", params.method, params.url.path, type(params.exception).__name__
        )

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_request_start)
    config.on_request_end.append(on_request_end)
    config.on_request_exception.append(on_request_exception)
    return config


# --8<-- [end:timing]


# --8<-- [start:otel]
def otel_trace_config(tracer_provider: AnyTracerProvider | None = None) -> aiohttp.TraceConfig:
    """OpenTelemetry's aiohttp-client instrumentation: one client span per attempt.

    Without ``tracer_provider`` it uses the global one (``trace.set_tracer_provider``).
    """
    return create_trace_config(tracer_provider=tracer_provider)


def traced_session(*trace_configs: aiohttp.TraceConfig) -> aiohttp.ClientSession:
    """A session for ``AsyncCommbox(session=...)``; the client leaves it open: close it."""
    # No cookies, as in the session the client builds for itself: the API sets none to keep.
    return aiohttp.ClientSession(
        trace_configs=list(trace_configs), cookie_jar=aiohttp.DummyCookieJar()
    )


# --8<-- [end:otel]


# --8<-- [start:main]
async def main(identity_ids: list[int]) -> None:
    """Fetch unread counts with both trace configs, printing the spans to stdout."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    tracer = provider.get_tracer("examples.tracing")
    async with traced_session(timing_trace_config(), otel_trace_config(provider)) as session:
        async with AsyncCommbox(session=session) as commbox:
            # The request spans are children of this one, in every fan-out worker too.
            with tracer.start_as_current_span("unread counts"):
                counts = await commbox.unread_counts(identity_ids, raise_on_error=False)
    print(counts)


# --8<-- [end:main]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="+", type=int)
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(parser.parse_args().ids))
