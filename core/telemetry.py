"""OpenTelemetry for every hookpump process: providers built once from the standard OTEL_* variables,
W3C trace context as strings, and the cheap helpers the hot paths use (the one importer of the SDK).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from contextvars import Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, NoOpMeter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TraceState,
)
from opentelemetry.util.types import Attributes

from core.errors import ConfigError
from core.settings import Settings

if TYPE_CHECKING:  # prometheus_client is imported only by a process that serves /metrics
    from prometheus_client import CollectorRegistry

# Re-exported: the rest of hookpump imports OpenTelemetry's types from here.
__all__ = ["Histogram", "Link", "Meter", "Span", "SpanKind", "Status", "StatusCode", "Tracer"]

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
EXPORTERS = ("otlp", "console", "none")
# Seconds; OTel's default buckets assume milliseconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Starting a span in it makes a root span, whatever the caller's current context holds.
ROOT_CONTEXT = otel_context.Context()
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass
class Telemetry:
    """What a process records with. `tracer` is None when tracing is off, and the hot paths then skip
    spans altogether; `meter` is a no-op meter when nothing collects metrics."""

    tracer: Tracer | None
    meter: Meter
    # Endpoint ids that get an endpoint_id label (HOOKPUMP_METRICS_ENDPOINTS); others get none.
    labelled_endpoints: frozenset[str] = frozenset()
    # True when a periodic reader pushes metrics (OTLP, console), not only a scrape of /metrics.
    pushes_metrics: bool = False
    _registry: CollectorRegistry | None = None
    _providers: list[TracerProvider | MeterProvider] = field(default_factory=list)

    @classmethod
    def disabled(cls, settings: Settings | None = None) -> Telemetry:
        labelled = frozenset(settings.metrics_endpoints) if settings else frozenset()
        return cls(tracer=None, meter=NoOpMeter("hookpump"), labelled_endpoints=labelled)

    def endpoint_label(self, endpoint_id: str) -> str:
        """The endpoint_id label value: the id for a marked endpoint, else "" (no label)."""
        return endpoint_id if endpoint_id in self.labelled_endpoints else ""

    def prometheus_text(self) -> bytes:
        """Every metric in Prometheus text format (collects, so observable callbacks run now)."""
        if self._registry is None:
            return b""
        from prometheus_client import generate_latest

        return generate_latest(self._registry)

    def shutdown(self) -> None:
        """Flush what the exporters hold and stop their threads; safe to call twice."""
        providers, self._providers = self._providers, []
        for provider in providers:
            provider.shutdown()


def create_telemetry(
    settings: Settings,
    service: str,
    *,
    prometheus: bool = False,
    span_exporter: SpanExporter | None = None,
    metric_readers: Sequence[MetricReader] = (),
) -> Telemetry:
    """Providers for one process, from the OTEL_* variables (read by convention, as the SDK does).

    Tracing is on when OTEL_TRACES_EXPORTER names an exporter or OTEL_TRACES_SAMPLER is set (then spans
    are sampled, their ids go to logs and receivers, and nothing is exported unless an exporter is
    named). Unlike the SDK's own auto-configuration, an unset exporter means none, not OTLP: with nothing
    configured a process records nothing and tries to reach no collector. Metrics are collected when
    `prometheus` (a /metrics to serve), OTEL_METRICS_EXPORTER or `metric_readers` asks for them.
    `span_exporter` and `metric_readers` are for tests (spans are exported synchronously).
    """
    if _flag("OTEL_SDK_DISABLED"):
        return Telemetry.disabled(settings)
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over these defaults.
    defaults = {"service.name": service, "service.instance.id": settings.worker_id}
    resource = Resource.create({**defaults, **OTELResourceDetector().detect().attributes})
    span_exporters = [_span_exporter(name) for name in _exporter_names("OTEL_TRACES_EXPORTER")]
    if span_exporter is not None:
        span_exporters.append(span_exporter)
    providers: list[TracerProvider | MeterProvider] = []
    tracer: Tracer | None = None
    if span_exporters or os.environ.get("OTEL_TRACES_SAMPLER"):
        tracer_provider = TracerProvider(resource=resource)  # its sampler: OTEL_TRACES_SAMPLER(_ARG)
        tracer_provider.sampler = LinkedSampler(tracer_provider.sampler)  # read by get_tracer() below
        for exporter in span_exporters:
            processor = SimpleSpanProcessor(exporter) if exporter is span_exporter else BatchSpanProcessor(exporter)
            tracer_provider.add_span_processor(processor)
        tracer = tracer_provider.get_tracer("hookpump")
        providers.append(tracer_provider)
    readers = list(metric_readers)
    pushed = [PeriodicExportingMetricReader(_metric_exporter(n)) for n in _exporter_names("OTEL_METRICS_EXPORTER")]
    readers += pushed
    registry: CollectorRegistry | None = None
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()  # this provider's own, not prometheus_client's global one
        readers.append(PrometheusMetricReader(registry=registry))
    meter: Meter = NoOpMeter("hookpump")
    if readers:
        meter_provider = MeterProvider(resource=resource, metric_readers=readers)
        meter = meter_provider.get_meter("hookpump")
        providers.append(meter_provider)
    return Telemetry(
        tracer=tracer,
        meter=meter,
        labelled_endpoints=frozenset(settings.metrics_endpoints),
        pushes_metrics=bool(pushed),
        _registry=registry,
        _providers=providers,
    )


class LinkedSampler(Sampler):
    """Samples a root span that links to another (a delivery attempt, linked to its message's ingest
    span) as that span was sampled, so that with ratio sampling a message's attempts are traced exactly
    when its ingest was. Every other span is left to the configured sampler."""

    def __init__(self, configured: Sampler) -> None:
        self._configured = configured

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if links and not trace.get_current_span(parent_context).get_span_context().is_valid:
            if links[0].context.trace_flags.sampled:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
            return SamplingResult(Decision.DROP, None, trace_state)
        return self._configured.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"LinkedSampler{{{self._configured.get_description()}}}"


class Tally:
    """A cumulative count per tuple of attribute values, reported by an observable counter when metrics
    are collected. Adding is a dict update (well under a microsecond), where an SDK counter's `add` costs
    10-20 us: the worker adds several per delivery. Values must come from small fixed sets."""

    __slots__ = ("_attributes", "counts")

    def __init__(self, meter: Meter, name: str, *, unit: str, description: str, attributes: Sequence[str] = ()) -> None:
        self._attributes = tuple(attributes)
        self.counts: dict[tuple[str, ...], int] = {}
        meter.create_observable_counter(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, values: tuple[str, ...] = (), amount: int = 1) -> None:
        self.counts[values] = self.counts.get(values, 0) + amount

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        # A copy: a periodic exporter collects on its own thread while the event loop keeps adding.
        return [Observation(n, attributes(self._attributes, values)) for values, n in dict(self.counts).items()]


def attributes(names: Sequence[str], values: Sequence[str]) -> dict[str, str]:
    """Attribute dict from parallel names and values, leaving out empty values (an unlabelled endpoint)."""
    return {name: value for name, value in zip(names, values, strict=True) if value}


def observe_gauge(
    meter: Meter, name: str, read: Callable[[], Iterable[tuple[float, dict[str, str]]]], *, unit: str, description: str
) -> None:
    """An observable gauge whose callback `read()` returns [(value, attributes), ...] when collected."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attrs) for value, attrs in read()]

    meter.create_observable_gauge(name, callbacks=[callback], unit=unit, description=description)


def duration_histogram(meter: Meter, name: str, description: str) -> Histogram:
    return meter.create_histogram(
        name, unit="s", description=description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
    )


# --- trace context ---------------------------------------------------------------------------------


def span_context(traceparent: str | None) -> SpanContext | None:
    """The remote span context a W3C `traceparent` names; None if absent or malformed."""
    match = _TRACEPARENT.fullmatch(traceparent.strip().lower()) if traceparent else None
    if match is None or match[1] == "ff":
        return None
    trace_id, span_id = int(match[2], 16), int(match[3], 16)
    if trace_id == 0 or span_id == 0:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(int(match[4], 16)))


def parent_context(traceparent: str | None) -> otel_context.Context | None:
    """A context whose current span is the remote parent a `traceparent` header names, for start_span."""
    remote = span_context(traceparent)
    return None if remote is None else trace.set_span_in_context(NonRecordingSpan(remote))


def link_to(traceparent: str) -> list[Link]:
    remote = span_context(traceparent)
    return [] if remote is None else [Link(remote)]


def traceparent_of(span: Span) -> str:
    """The W3C `traceparent` that makes a receiver's span a child of `span`."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span as hex, or None outside any valid span."""
    ctx = trace.get_current_span().get_span_context()
    return (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}") if ctx.is_valid else None


class SpanScope:
    """Makes `span` current for a block (so log lines in it carry its ids), marks it failed if an
    exception escapes, and ends it."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token: Token[otel_context.Context] | None = None

    def __enter__(self) -> Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        self.finish(self._span, None if isinstance(exc, asyncio.CancelledError) else exc)
        self._span.end()

    def finish(self, span: Span, exc: BaseException | None) -> None:
        """Describe how the block ended; a subclass may judge some exceptions no failure (a 4xx answer)."""
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


NO_SCOPE: AbstractContextManager[None] = contextlib.nullcontext()


def scope(span: Span | None) -> AbstractContextManager[Span | None]:
    """SpanScope(span), or a shared do-nothing scope when tracing is off."""
    return NO_SCOPE if span is None else SpanScope(span)


# --- configuration from OTEL_* -----------------------------------------------------------------------


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def _exporter_names(variable: str) -> list[str]:
    names = [n.strip().lower() for n in os.environ.get(variable, "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(EXPORTERS))
    if unknown:
        hint = " (Prometheus: scrape /metrics)" if "prometheus" in unknown else ""
        raise ConfigError(variable, f"{', '.join(unknown)} not supported; use otlp, console or none{hint}")
    return [n for n in names if n != "none"]


def _otlp_protocol(signal: str) -> None:
    variable = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    protocol = os.environ.get(variable) or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    if protocol != "http/protobuf":
        name = variable if os.environ.get(variable) else "OTEL_EXPORTER_OTLP_PROTOCOL"
        raise ConfigError(name, f"{protocol!r} is not supported; hookpump exports OTLP over http/protobuf")


def _missing_otlp(variable: str, exc: ImportError) -> ConfigError:
    return ConfigError(variable, f"otlp needs the OTLP exporter: pip install 'hookpump[otlp]' ({exc})")


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    _otlp_protocol("TRACES")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise _missing_otlp("OTEL_TRACES_EXPORTER", exc) from exc
    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    _otlp_protocol("METRICS")
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    except ImportError as exc:
        raise _missing_otlp("OTEL_METRICS_EXPORTER", exc) from exc
    return OTLPMetricExporter()
