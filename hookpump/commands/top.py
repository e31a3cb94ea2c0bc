"""`hookpump top`: a live view of the queue, like `top` for the pump. Refreshes every second; `q` quits.

Built only from the API: the queue overview, the endpoint list and each endpoint's stats. Stats
fields this version does not know (the pacing loop's newer state, say) are shown as they come."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hookpump.client import HookpumpClient
from hookpump.client import types as t
from hookpump.commands.output import duration, rate
from hookpump.commands.session import Session, api_command

# Stats are fetched per endpoint; beyond this many, the largest backlogs are watched.
MAX_WATCHED = 40
KNOWN_STATS = set(t.EndpointStats.__annotations__)


@click.command(short_help="A live view of the queue, like top; q quits.", epilog="""\b
Examples:
  hookpump top                 # q quits
  hookpump top --once          # one frame, then exit (also when stdout is not a terminal)
  hookpump top --once --json   # the numbers behind it""")  # fmt: skip
@click.option("--interval", type=click.FloatRange(0.2, 60), default=1.0, show_default=True, help="Seconds per refresh.")
@click.option("--all", "show_all", is_flag=True, help="Show idle endpoints too.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@api_command
def top(session: Session, interval: float, show_all: bool, once: bool) -> None:
    """Each busy endpoint's backlog, pace against its limit, in flight, pause and why, success
    ratio and drain estimate, with the queue's totals above."""
    if session.as_json:
        overview, stats, _ = snapshot(session.client)
        session.output.json({"queue": overview, "endpoints": stats})
        return
    if once or not sys.stdout.isatty():
        session.output.console.print(render(*snapshot(session.client), show_all=show_all, fill=False))
        return
    console = Console()
    with keys() as pressed, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            live.update(render(*snapshot(session.client), show_all=show_all), refresh=True)
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                if pressed(left) in ("q", "Q", "\x03"):
                    return


def snapshot(client: HookpumpClient) -> tuple[t.QueueOverview, list[t.EndpointStats], dict[str, t.Endpoint]]:
    overview = client.queue_overview()
    endpoints = {endpoint["id"]: endpoint for endpoint in client.list_endpoints(limit=250)["data"]}
    watched = [entry["endpoint_id"] for entry in overview["largest_backlogs"]]
    watched += [eid for eid in endpoints if eid not in watched]
    stats = [client.endpoint_stats(eid) for eid in watched[:MAX_WATCHED]]
    return overview, stats, endpoints


def busy(stats: t.EndpointStats) -> bool:
    return bool(stats["backlog"] or stats["in_flight"] or stats["paused"] or any(stats["last_minute"].values()))


def render(
    overview: t.QueueOverview,
    stats: list[t.EndpointStats],
    endpoints: dict[str, t.Endpoint],
    show_all: bool = False,
    fill: bool = True,
) -> Group:
    counts = overview["counts"]
    pump = overview["pump"]
    header = Text.assemble(
        ("hookpump top", "bold"), f"   backlog {overview['backlog']}",
        f"   longest wait {duration(overview['oldest_pending_age_seconds'])}",
        f"   delivering {counts.get('delivering', 0)}   succeeded {counts.get('succeeded', 0)}",
        f"   failed {counts.get('failed', 0)}   workers {len(overview['workers'])}",
        ("   pump LATE" if pump.get("late") else f"   pump ran {duration(pump.get('seconds_since_last_run'))}",
         "red" if pump.get("late") else ""),
    )  # fmt: skip
    table = Table(box=None, header_style="bold reverse", expand=fill, pad_edge=False)
    for column in ("ENDPOINT", "URL", "BACKLOG", "DUE", "IN FLIGHT", "RATE / LIMIT", "PACE", "SENT/MIN",
                   "PAUSED", "SUCCESS", "DRAINS IN", "MORE"):  # fmt: skip
        table.add_column(column, no_wrap=column not in ("URL", "MORE"))
    rows = sorted((s for s in stats if show_all or busy(s)), key=lambda s: (-s["backlog"], s["endpoint_id"]))
    for s in rows:
        endpoint = endpoints.get(s["endpoint_id"])
        effective, limit = s["effective_rate_per_minute"], s["rate_limit_per_minute"]
        ratio = s["success_ratio"]
        table.add_row(
            s["endpoint_id"], endpoint["url"] if endpoint else "", str(s["backlog"]), str(s["due_now"]),
            str(s["in_flight"]),
            Text(f"{rate(effective)} / {rate(limit)}", style="yellow" if effective < limit else ""),
            pace_cell(s), str(sent_last_minute(s)), pause_cell(s),
            Text("-" if ratio is None else f"{ratio:.0%}", style="red" if ratio is not None and ratio < 0.9 else ""),
            duration(s["estimated_drain_seconds"]), extras(s),
        )  # fmt: skip
    footer = Text(f"{len(rows)} busy of {len(stats)} endpoints shown   q quits", style="dim")
    if not rows:
        footer = Text("nothing queued, in flight or paused   q quits", style="dim")
    return Group(header, Text(), table, Text(), footer)


def sent_last_minute(stats: t.EndpointStats) -> int:
    minute = stats["last_minute"]
    return minute["succeeded"] + minute["failed"] + minute["retrying"] + minute["overloaded"]


def pace_cell(stats: t.EndpointStats) -> Text:
    """The adaptive pace's state, and the rate that last failed (the receiver's capacity, as learnt)."""
    pacing = stats.get("pacing")
    if pacing is None:  # an older server
        return Text("-")
    failed = pacing["last_failed_rate_per_minute"]
    text = pacing["state"] + (f" (refused at {rate(failed)})" if failed is not None else "")
    return Text(text, style="" if pacing["state"] == "steady" else "yellow")


def pause_cell(stats: t.EndpointStats) -> Text:
    if not stats["paused"]:
        return Text("-")
    reason = stats["pause_reason"] or "paused"
    until = stats["paused_until"]
    return Text(reason + (" (timed)" if until else ""), style="red")


def extras(stats: t.EndpointStats) -> str:
    """Fields a newer server adds (e.g. the pacing loop's state): shown as name=value."""
    extra: dict[str, Any] = {k: v for k, v in stats.items() if k not in KNOWN_STATS}
    return " ".join(f"{name}={value}" for name, value in extra.items() if value is not None)


@contextlib.contextmanager
def keys() -> Iterator[Any]:
    """While open, the terminal hands over single key presses; `pressed(timeout)` returns one or None."""
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)

    def pressed(timeout: float) -> str | None:
        if fd is None:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 1).decode(errors="replace") if ready else None

    try:
        yield pressed
    finally:
        if fd is not None and saved is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
