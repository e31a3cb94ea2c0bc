"""Everything the client commands print goes through here: tables, detail views and relative times
for people (colours only on a terminal), JSON for scripts (`--json`), one line per error, and the
exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hookpump.client import ApiProblem, ClientError, MissingKey, ServerUnreachable

EXIT_OK = 0
EXIT_REFUSED = 1  # the API answered with a problem; its detail is printed
EXIT_USAGE = 2  # bad arguments or input, or no key: nothing was sent
EXIT_UNREACHABLE = 3  # no answer from the server

STATUS_STYLES = {
    "succeeded": "green", "failed": "red", "cancelled": "dim", "retrying": "yellow", "pending": "cyan",
    "delivering": "blue",
}  # fmt: skip
# Not a terminal: no colours and no wrapping, so that `| grep` and `| cut` see whole lines.
PIPE_WIDTH = 400


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        terminal = sys.stdout.isatty()
        self.console = Console(width=None if terminal else PIPE_WIDTH, highlight=False, soft_wrap=not terminal)
        self.errors = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else PIPE_WIDTH)

    def json(self, value: Any) -> None:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))

    def json_line(self, value: Any) -> None:
        click.echo(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def line(self, text: str | Text = "", *, style: str | None = None) -> None:
        self.console.print(text, style=style, overflow="ignore", crop=False)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal (stderr, so stdout stays the answer)."""
        self.errors.print(text, style="dim", overflow="ignore", crop=False)

    def table(self, columns: Sequence[str], rows: Iterable[Sequence[str | Text]]) -> None:
        table = Table(*columns, box=None, pad_edge=False, header_style="bold", show_edge=False)
        for row in rows:
            table.add_row(*row)
        self.console.print(table, overflow="ignore", crop=False)

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """A record as aligned `name  value` lines."""
        pairs = list(pairs)
        width = max((len(name) for name, _ in pairs), default=0)
        for name, value in pairs:
            shown = value if isinstance(value, Text) else str(value)
            self.line(Text.assemble((name.ljust(width), "bold"), "  ", shown))

    def fail(self, error: ClientError) -> NoReturn:
        """Report `error` as one line (or, with --json, its problem document on stdout) and exit."""
        if self.as_json:
            self.json(error.problem())
        else:
            self.errors.print(f"hookpump: {error_line(error)}", style="red" if sys.stderr.isatty() else None,
                              overflow="ignore", crop=False, markup=False)  # fmt: skip
        raise SystemExit(exit_code(error))

    def usage(self, message: str) -> NoReturn:
        """Input we refuse before sending anything: one line naming the problem and the fix."""
        if self.as_json:
            self.json({"type": "https://hookpump.dev/problems/usage", "title": "Bad input", "detail": message})
        else:
            self.errors.print(f"hookpump: {message}", overflow="ignore", crop=False, markup=False)
        raise SystemExit(EXIT_USAGE)


def exit_code(error: ClientError) -> int:
    if isinstance(error, ServerUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(error, MissingKey):
        return EXIT_USAGE
    return EXIT_REFUSED


def error_line(error: ClientError) -> str:
    if not isinstance(error, ApiProblem):
        return str(error)
    hint = {
        401: " (check --key / HOOKPUMP_KEY; `hookpump dev` keeps its key in .hookpump/admin-key)",
        403: " (use a key with that scope)",
    }.get(error.status, "")
    return f"{error.status}: {error.detail}{hint}"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`1 delivery`, `2 deliveries`, `0 deliveries`."""
    if count == 1:
        return f"1 {noun}"
    return f"{count} {plural or noun + 's'}"


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def relative(value: str | None, now: datetime | None = None) -> str:
    """`3s ago`, `in 2m`, `-` for none; for people only (--json keeps the timestamps)."""
    if not value:
        return "-"
    seconds = ((now or datetime.now(UTC)) - parse_time(value)).total_seconds()
    text = duration(abs(seconds))
    if text == "now":
        return text
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def rate(per_minute: float) -> str:
    """A rate per minute, shown per second when that reads better."""
    if per_minute >= 120:
        return f"{per_minute / 60:.3g}/s"
    return f"{per_minute:.3g}/min"
