"""examples/tracing.py: a traced session under the client, against the fake server."""

from __future__ import annotations

import logging

import pytest
from example_loading import load_example
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from commbox_async import AsyncCommbox, Retries
from commbox_async.testing import FakeCommbox

TOKEN = "tracing-token-8f2a"
# No real back-off waits: the scripted 503 is retried at once.
NO_WAIT = Retries(base_delay=0.0, max_delay=0.0, default_retry_after=0.0)


def _status(span: ReadableSpan) -> int:
    """The span's HTTP status, under the new or the old semantic-convention name."""
    attributes = dict(span.attributes or {})
    status = attributes.get("http.response.status_code", attributes.get("http.status_code"))
    assert isinstance(status, int), attributes
    return status


async def test_trace_config_logs_every_attempt_of_a_retried_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The TraceConfig sees both attempts of a call retried after a 503, and never the token."""
    tracing = load_example("tracing")
    caplog.set_level(logging.INFO, logger="commbox_app.http")
    async with FakeCommbox(token=TOKEN) as fake:
        fake.script(5, 503)
        async with tracing.traced_session(tracing.timing_trace_config()) as session:
            async with AsyncCommbox(
                token=TOKEN, base_url=fake.url, session=session, rate_limit=1000, retries=NO_WAIT
            ) as commbox:
                page = await commbox.get_user_objects(5, page_size=3)
            assert not session.closed  # the client leaves a given session open
    assert len(page.data) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "commbox_app.http"]
    assert [line.split(" in ")[0] for line in lines] == [
        "GET /v2/users/identities/5/objects -> 503",
        "GET /v2/users/identities/5/objects -> 200",
    ]
    assert not any(TOKEN in line for line in lines)


async def test_opentelemetry_spans_are_children_of_the_callers_span() -> None:
    """OpenTelemetry makes one client span per attempt, in the caller's trace, from every worker."""
    tracing = load_example("tracing")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    async with FakeCommbox(token=TOKEN) as fake:
        fake.script(2, 503)
        async with tracing.traced_session(tracing.otel_trace_config(provider)) as session:
            async with AsyncCommbox(
                token=TOKEN, base_url=fake.url, session=session, rate_limit=1000, retries=NO_WAIT
            ) as commbox:
                with tracer.start_as_current_span("job") as job:
                    results = [r async for r in commbox.fetch_many([1, 2, 3], concurrency=3)]
        served = fake.count()
    assert all(r.ok for r in results)
    spans = exporter.get_finished_spans()
    http = [s for s in spans if s.name != "job"]
    assert len(http) == served == 4  # three identities, one retried
    assert sorted(_status(s) for s in http) == [200, 200, 200, 503]
    job_context = job.get_span_context()
    for span in http:
        assert span.parent is not None and span.parent.span_id == job_context.span_id
        assert span.context is not None and span.context.trace_id == job_context.trace_id
        assert TOKEN not in repr(dict(span.attributes or {}))
