"""The worker's telemetry: a span per delivery attempt (linked to its message's ingest trace) and per pump
window, and the delivery, pacing and pump metrics, all recorded in the worker process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from core.store import ClaimedDelivery, ClaimedEndpoint, Completion
from core.telemetry import (
    ROOT_CONTEXT,
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tally,
    Telemetry,
    duration_histogram,
    link_to,
    observe_gauge,
)
from delivery.attempt import AttemptReport
from delivery.outcome import Outcome

if TYPE_CHECKING:
    from scheduler.pump import WindowReport

# What became of the delivery after an attempt, as operators count it: a 429/503 pause and a 410 keep it
# queued, so they are "retrying" too.
OUTCOMES = {"succeeded": "succeeded", "retry": "retrying", "overloaded": "retrying", "gone": "retrying",
            "failed": "failed"}  # fmt: skip
STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def status_class(status_code: int | None) -> str:
    """"2xx".."5xx", or "none" when the receiver never answered (timeout, refused, reset)."""
    return "none" if status_code is None else STATUS_CLASSES.get(status_code // 100, "none")


class WorkerTelemetry:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._tracer = telemetry.tracer
        meter = telemetry.meter
        self.attempts = Tally(
            meter, "hookpump.delivery.attempts", unit="{attempt}",
            attributes=("outcome", "status_class", "endpoint_id"),
            description="Delivery attempts by what became of the delivery (succeeded, retrying, failed) and the "
            "receiver's status class (none: no answer)",
        )  # fmt: skip
        self.duration = duration_histogram(
            meter, "hookpump.delivery.attempt.duration", "Time from sending a webhook request to its answer"
        )
        self.pauses = Tally(
            meter, "hookpump.endpoint.pauses", unit="{pause}", attributes=("status_code", "endpoint_id"),
            description="Endpoint pauses after a 429 or 503 answer",
        )  # fmt: skip
        self.held_back = Tally(
            meter, "hookpump.pump.endpoints_held_back", unit="{endpoint}",
            description="Ready endpoints a claim passed over: paced, paused or at max_in_flight",
        )  # fmt: skip
        self.late = Tally(
            meter, "hookpump.delivery.late_requeues", unit="{delivery}", attributes=("endpoint_id",),
            description="Deliveries that missed their paced slot by over half an interval and were re-queued",
        )  # fmt: skip
        self.claimed = Tally(
            meter, "hookpump.pump.claimed", unit="{delivery}", description="Deliveries claimed for sending"
        )
        self.windows = Tally(
            meter, "hookpump.pump.windows", unit="{window}", attributes=("outcome",),
            description="Pump windows run by this worker, by how they ended",
        )  # fmt: skip
        self._window_lag: float | None = None
        self._outstanding: Callable[[], int] = lambda: 0
        observe_gauge(
            meter, "hookpump.pump.window_lag", self._lag_now, unit="s",
            description="How late this worker's current pump window started after its cron tick",
        )  # fmt: skip
        observe_gauge(
            meter, "hookpump.worker.outstanding", lambda: [(self._outstanding(), {})], unit="{delivery}",
            description="Deliveries this worker has claimed and not yet reported (waiting or in flight)",
        )  # fmt: skip

    def watch_outstanding(self, read: Callable[[], int]) -> None:
        self._outstanding = read

    def _lag_now(self) -> Iterable[tuple[float, dict[str, str]]]:
        return [] if self._window_lag is None else [(self._window_lag, {})]

    # --- delivery attempts: called once per delivery, so cheap when nothing is configured ------------

    def start_attempt(self, endpoint: ClaimedEndpoint, delivery: ClaimedDelivery) -> Span | None:
        """The attempt's span, linked to the ingest request's trace; None when tracing is off."""
        if self._tracer is None:
            return None
        return self._tracer.start_span(
            "delivery attempt",
            # A root of its own trace, whatever is current: the ingest trace is linked, not a parent.
            context=ROOT_CONTEXT,
            kind=SpanKind.CLIENT,
            links=link_to(delivery.trace),
            attributes={
                "hookpump.delivery.id": delivery.id,
                "hookpump.endpoint.id": endpoint.id,
                "hookpump.message.id": delivery.message_id,
                "hookpump.event_type": delivery.event_type,
                "hookpump.attempt": delivery.attempt,
            },  # few: each attribute costs ~10 us to record and export, per attempt
        )

    def attempted(self, endpoint_id: str, completion: Completion, report: AttemptReport, span: Span | None) -> None:
        outcome = OUTCOMES.get(completion.outcome, completion.outcome)
        status = status_class(report.status_code)
        label = self.telemetry.endpoint_label(endpoint_id)
        self.attempts.add((outcome, status, label))
        self.duration.record(
            report.record["duration_ms"] / 1000, {"status_class": status, "endpoint_id": label} if label else
            {"status_class": status}
        )  # fmt: skip
        if completion.outcome == "overloaded":
            self.pauses.add((str(report.status_code), label))
        if span is not None:
            if report.status_code is not None:
                span.set_attribute("http.response.status_code", report.status_code)
            span.set_attribute("hookpump.delivery.outcome", outcome)
            if report.outcome is not Outcome.SUCCEEDED:
                span.set_status(Status(StatusCode.ERROR, report.error or report.outcome.value))

    def late_requeued(self, endpoint_id: str) -> None:
        self.late.add((self.telemetry.endpoint_label(endpoint_id),))

    # --- the pump ------------------------------------------------------------------------------------

    def claimed_some(self, claimed: int, held_back: int) -> None:
        if claimed:
            self.claimed.add(amount=claimed)
        if held_back:
            self.held_back.add(amount=held_back)

    def start_window(self, report: WindowReport) -> Span | None:
        self._window_lag = max(0, report.started_ms - report.scheduled_ms) / 1000
        if self._tracer is None:
            return None
        return self._tracer.start_span(
            "pump window", context=ROOT_CONTEXT, attributes={"hookpump.window.scheduled_ms": report.scheduled_ms,
                                       "hookpump.window.lag_ms": report.started_ms - report.scheduled_ms}
        )  # fmt: skip

    def end_window(self, span: Span | None, report: WindowReport) -> None:
        """Count the window; describe it on its span (how much it sent, what it held back) and end it."""
        self.windows.add((report.outcome,))
        if span is None:
            return
        span.set_attributes({
            "hookpump.window.outcome": report.outcome,
            "hookpump.window.claims": report.claims,
            "hookpump.window.claimed": report.claimed,
            "hookpump.window.endpoints_held_back": report.endpoints_held_back,
            "hookpump.window.reaped": report.reaped,
            "hookpump.window.errors": report.errors,
        })  # fmt: skip
        if report.errors:
            span.set_status(Status(StatusCode.ERROR, f"{report.errors} pump iterations failed"))
        span.end(end_time=(report.ended_ms or int(time.time() * 1000)) * 1_000_000)
