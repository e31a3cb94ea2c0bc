"""Telemetry set-up from OTEL_* and HOOKPUMP_* variables, W3C traceparent parsing, and trace ids in logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.errors import ConfigError
from core.logs import JsonFormatter, TraceContextFilter
from core.settings import Settings
from core.telemetry import ROOT_CONTEXT, SpanScope, create_telemetry, link_to, span_context, traceparent_of

OTEL_VARIABLES = ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_TRACES_SAMPLER",
                  "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_PROTOCOL")  # fmt: skip
TRACE, SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
SETTINGS = Settings(redis_url="redis://127.0.0.1:1/0", worker_id="w-1")


@pytest.fixture(autouse=True)
def clean_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"00-{TRACE}-{SPAN}-01", (int(TRACE, 16), int(SPAN, 16), 1)),
        (f"00-{TRACE}-{SPAN}-00", (int(TRACE, 16), int(SPAN, 16), 0)),
        (f" 00-{TRACE.upper()}-{SPAN.upper()}-01 ", (int(TRACE, 16), int(SPAN, 16), 1)),
        (f"00-{'0' * 32}-{SPAN}-01", None),  # all-zero trace id
        (f"00-{TRACE}-{'0' * 16}-01", None),  # all-zero span id
        (f"ff-{TRACE}-{SPAN}-01", None),  # version ff is invalid
        (f"00-{TRACE[:-1]}-{SPAN}-01", None),  # short trace id
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)  # fmt: skip
def test_traceparent_parsing(value: str | None, expected: tuple[int, int, int] | None) -> None:
    context = span_context(value)
    if expected is None:
        assert context is None
    else:
        assert context is not None and context.is_remote
        assert (context.trace_id, context.span_id, int(context.trace_flags)) == expected


def test_with_nothing_configured_nothing_is_recorded() -> None:
    telemetry = create_telemetry(SETTINGS, "hookpump-worker")
    assert telemetry.tracer is None
    assert isinstance(telemetry.meter, NoOpMeter)
    assert telemetry.prometheus_text() == b""


def test_a_sampler_alone_turns_tracing_on_without_exporting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    telemetry = create_telemetry(SETTINGS, "hookpump-worker")
    assert telemetry.tracer is not None
    span = telemetry.tracer.start_span("x")
    context = span.get_span_context()
    assert span.is_recording() and context.trace_flags.sampled
    assert traceparent_of(span).startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    span.end()
    telemetry.shutdown()


@pytest.mark.parametrize("ratio", ["0", "1"])
def test_an_attempt_is_sampled_as_the_ingest_span_it_links_to(monkeypatch: pytest.MonkeyPatch, ratio: str) -> None:
    """Whatever the ratio, a message's attempts are traced exactly when its ingest was."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry(SETTINGS, "hookpump-worker", span_exporter=exporter)
    assert telemetry.tracer is not None
    for flags in ("01", "00"):
        span = telemetry.tracer.start_span(f"linked-{flags}", context=ROOT_CONTEXT,
                                           links=link_to(f"00-{TRACE}-{SPAN}-{flags}"))
        assert span.get_span_context().is_valid  # sampled or not, it has ids to propagate
        span.end()
    telemetry.tracer.start_span("unlinked", context=ROOT_CONTEXT).end()
    expected = ["linked-01", "unlinked"] if ratio == "1" else ["linked-01"]
    assert [s.name for s in exporter.get_finished_spans()] == expected
    telemetry.shutdown()


def test_the_sdk_can_be_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    telemetry = create_telemetry(SETTINGS, "hookpump-api", prometheus=True)
    assert telemetry.tracer is None and telemetry.prometheus_text() == b""


def test_service_name_and_resource_attributes_come_from_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry(SETTINGS, "hookpump-api", span_exporter=exporter)
    assert telemetry.tracer is not None
    telemetry.tracer.start_span("default").end()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "webhooks-eu")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod")
    named = create_telemetry(SETTINGS, "hookpump-api", span_exporter=exporter)
    assert named.tracer is not None
    named.tracer.start_span("named").end()
    default, configured = (dict(s.resource.attributes) for s in exporter.get_finished_spans())
    assert default["service.name"] == "hookpump-api" and default["service.instance.id"] == "w-1"
    assert configured["service.name"] == "webhooks-eu" and configured["deployment.environment"] == "prod"
    telemetry.shutdown()
    named.shutdown()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
        ("OTEL_METRICS_EXPORTER", "prometheus", "OTEL_METRICS_EXPORTER"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_an_unsupported_otel_setting_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        create_telemetry(SETTINGS, "hookpump-api")
    assert raised.value.variable == named


def test_otlp_export_is_set_up_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    telemetry = create_telemetry(SETTINGS, "hookpump-worker")
    assert telemetry.tracer is not None and telemetry.pushes_metrics
    telemetry.shutdown()  # nothing recorded, so nothing is sent


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({"HOOKPUMP_METRICS_OPEN": "yes"}, "metrics_open", True),
        ({"HOOKPUMP_WORKER_METRICS_PORT": "9464"}, "worker_metrics_port", 9464),
        ({"HOOKPUMP_WORKER_METRICS_HOST": "0.0.0.0"}, "worker_metrics_host", "0.0.0.0"),
        ({"HOOKPUMP_HOST": "0.0.0.0"}, "worker_metrics_host", "127.0.0.1"),
        ({"HOOKPUMP_METRICS_ENDPOINTS": "ep_01hz0000000000000000000000, ep_01hz0000000000000000000001"},
         "metrics_endpoints", ("ep_01hz0000000000000000000000", "ep_01hz0000000000000000000001")),
        ({}, "metrics_endpoints", ()),
    ],
)  # fmt: skip
def test_metrics_settings(environ: dict[str, str], field: str, expected: object) -> None:
    assert getattr(Settings.from_env(environ), field) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [("HOOKPUMP_METRICS_ENDPOINTS", "ep_1,ep_2"), ("HOOKPUMP_WORKER_METRICS_PORT", "70000"),
     ("HOOKPUMP_METRICS_OPEN", "maybe")],
)  # fmt: skip
def test_bad_metrics_settings_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.variable == variable


def test_log_lines_carry_the_current_spans_ids() -> None:
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry(SETTINGS, "hookpump-worker", span_exporter=exporter)
    assert telemetry.tracer is not None
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("tests.telemetry")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        span = telemetry.tracer.start_span("attempt")
        with SpanScope(span):
            logger.warning("inside %s", "a span", extra={"delivery_id": "dlv_1"})
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        telemetry.shutdown()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    ids = span.get_span_context()
    assert inside["trace_id"] == f"{ids.trace_id:032x}" and inside["span_id"] == f"{ids.span_id:016x}"
    assert inside["delivery_id"] == "dlv_1" and inside["message"] == "inside a span"
    assert "trace_id" not in outside and "span_id" not in outside


def test_the_workers_metrics_listen_on_loopback_whatever_address_the_api_uses() -> None:
    """The worker's /metrics answers without a key: it binds its own setting, not HOOKPUMP_HOST."""
    from core.telemetry import Telemetry
    from hookpump.cli import worker_metrics_server

    settings = Settings.from_env({"HOOKPUMP_HOST": "0.0.0.0", "HOOKPUMP_WORKER_METRICS_PORT": "9464"})
    server = worker_metrics_server(settings, Telemetry.disabled())
    assert server is not None and (server.config.host, server.config.port) == ("127.0.0.1", 9464)
    opened = worker_metrics_server(settings.replace(worker_metrics_host="0.0.0.0"), Telemetry.disabled())
    assert opened is not None and opened.config.host == "0.0.0.0"
