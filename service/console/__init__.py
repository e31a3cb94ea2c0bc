"""The operator console: server-rendered pages at /ui over the same reads and operations as the
JSON API (service/deliveries.py, service/monitoring.py, service/operations.py). No second copy of
the logic lives here: this package signs operators in, checks forms, and renders."""

from service.console.app import create_console

__all__ = ["create_console"]
