"""Logging set-up: one JSON object per line for machines, or a short text line for a laptop.

Stdlib logging only. Ids travel as `extra=` fields (CONTEXT_FIELDS), the current span's trace and span
ids are added by a filter, and all land in every format.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, TextIO

from core.errors import ConfigError
from core.settings import Settings
from core.telemetry import current_ids

# The `extra=` keys a log line may carry; anything else passed as extra is left out of the output.
CONTEXT_FIELDS = ("delivery_id", "endpoint_id", "message_id", "worker_id", "trace_id", "span_id")

# Libraries that log every request or job at INFO; at INFO they would drown hookpump's own lines.
NOISY_LOGGERS = ("uvicorn.access", "httpx", "httpcore", "arq.worker", "arq.jobs")


def timestamp(created: float) -> str:
    """A LogRecord's `created` as RFC 3339 UTC with milliseconds: 2024-05-01T12:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TraceContextFilter(logging.Filter):
    """Adds the current span's trace_id and span_id to a record that does not carry its own, so a log
    line can be found from its trace and the other way round. Outside a span (tracing off) it adds none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "trace_id" not in record.__dict__:
            ids = current_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


class JsonFormatter(logging.Formatter):
    """ts, level, logger, message, then whichever context ids the call passed, then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """`12:00:00.123 INFO  scheduler.worker: message  delivery_id=dlv_… endpoint_id=ep_…`."""

    def format(self, record: logging.LogRecord) -> str:
        clock = timestamp(record.created)[11:23]
        context = " ".join(
            f"{field}={record.__dict__[field]}"
            for field in CONTEXT_FIELDS
            if record.__dict__.get(field) is not None
        )
        line = f"{clock} {record.levelname:<5} {record.name}: {record.getMessage()}"
        if context:
            line = f"{line}  {context}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route every logger through one stderr handler in `settings.log_format`; safe to call twice."""
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        raise ConfigError(
            "HOOKPUMP_LOG_LEVEL", f"{settings.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR"
        )
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    quiet = level if level <= logging.DEBUG else max(level, logging.WARNING)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
