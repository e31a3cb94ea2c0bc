"""`hookpump deliveries list|show`: the delivery log, with every filter of the API and `--follow`."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.text import Text

from hookpump.client import types as t
from hookpump.commands.filters import TIME_HELP, time_filter
from hookpump.commands.output import relative, status_text
from hookpump.commands.session import Session, api_command

FOLLOW_INTERVAL = 1.0
# A sparse filter may come back in short pages; stop after this many so a list never hangs.
MAX_PAGES = 50


@click.group(epilog="Example: hookpump deliveries list --status failed --since 1h")
def deliveries() -> None:
    """The delivery log: what was sent where, and what came back."""


@deliveries.command("list", epilog="""\b
Examples:
  hookpump deliveries list --status failed --status cancelled --since 2h
  hookpump deliveries list --endpoint ep_01j... --event-type order.paid --limit 100
  hookpump deliveries list --follow             # new deliveries as they arrive; Ctrl-C stops
  hookpump deliveries list --message msg_01j... -q""")  # fmt: skip
@click.option("--endpoint", "endpoint_id", metavar="ID", help="Only to this endpoint.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(t.DELIVERY_STATUSES),
              help="Only in this status (repeat for several).")
@click.option("--event-type", metavar="TYPE", help="Only of this event type.")
@click.option("--message", "message_id", metavar="ID", help="Only of this message.")
@click.option("--since", metavar="TIME", help="Created at or after: " + TIME_HELP)
@click.option("--until", metavar="TIME", help="Created at or before: " + TIME_HELP)
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True, help="Show at most this many.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new deliveries as they arrive.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids.")
@api_command
def list_deliveries(session: Session, limit: int, follow: bool, quiet: bool, **options: Any) -> None:
    """The delivery log, newest first (with --follow, oldest first as they arrive)."""
    filters = {
        "endpoint_id": options["endpoint_id"], "status": options["statuses"], "event_type": options["event_type"],
        "message_id": options["message_id"], "since": time_filter(options["since"]),
        "until": time_filter(options["until"]),
    }  # fmt: skip
    found = collect(session, filters, limit)
    if follow:
        stream(session, filters, list(reversed(found)), quiet)
        return
    if session.as_json:
        session.output.json(found)
    else:
        print_rows(session, found, quiet, header=True)


def collect(session: Session, filters: dict[str, Any], limit: int) -> list[t.Delivery]:
    found: list[t.Delivery] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = session.client.list_deliveries(**filters, limit=min(250, limit - len(found)), cursor=cursor)
        found += page["data"]
        cursor = page["next_cursor"]
        if cursor is None or len(found) >= limit:
            break
    return found[:limit]


def stream(session: Session, filters: dict[str, Any], first: list[t.Delivery], quiet: bool) -> None:
    """Print `first`, then every delivery not seen before and every change of status of one already
    printed (again, with its new status), polling once a second until Ctrl-C.

    Changes are seen among the newest 250 deliveries matching the filters; with --quiet only new ids
    are printed, since an id alone cannot say what changed."""
    shown: dict[str, str] = {}  # id -> the status last printed
    batch = first
    header = True
    try:
        while True:
            fresh = [d for d in batch if shown.get(d["id"]) != d["status"] and not (quiet and d["id"] in shown)]
            shown.update((d["id"], d["status"]) for d in fresh)
            if session.as_json:
                for delivery in fresh:
                    session.output.json_line(delivery)
            elif fresh or header:
                print_rows(session, fresh, quiet, header=header)
                header = False
            time.sleep(FOLLOW_INTERVAL)
            # Newest first from the API; printed oldest first, as a log is read.
            batch = list(reversed(session.client.list_deliveries(**filters, limit=250)["data"]))
    except KeyboardInterrupt:
        return


def print_rows(session: Session, rows: list[t.Delivery], quiet: bool, header: bool) -> None:
    if quiet:
        for delivery in rows:
            session.output.line(delivery["id"])
        return
    columns = ["ID", "STATUS", "EVENT TYPE", "ENDPOINT", "ATTEMPTS", "LAST ANSWER", "CREATED", "NEXT"]
    table_rows: list[list[str | Text]] = [
        [d["id"], status_text(d["status"]), d["event_type"], d["endpoint_id"], str(d["attempts"]), last_answer(d),
         relative(d["created_at"]), relative(d["next_attempt_at"])]
        for d in rows
    ]  # fmt: skip
    if header:
        session.output.table(columns, table_rows)
    else:  # follow mode: keep column widths steady enough without re-printing the header
        for row in table_rows:
            session.output.line(Text("  ").join(Text(c) if isinstance(c, str) else c for c in row))


def last_answer(delivery: t.Delivery) -> str:
    if delivery["last_status_code"] is not None:
        return str(delivery["last_status_code"])
    return (delivery["last_error"] or "-")[:40]


@deliveries.command(epilog="Example: hookpump deliveries show dlv_01j..._1")
@click.argument("delivery_id")
@api_command
def show(session: Session, delivery_id: str) -> None:
    """A delivery with every attempt (request, answer, error) and operator action."""
    detail = session.client.get_delivery(delivery_id)
    out = session.output
    if session.as_json:
        out.json(detail)
        return
    delivery = detail["delivery"]
    out.fields([
        ("id", delivery["id"]), ("status", status_text(delivery["status"])),
        ("event type", delivery["event_type"]), ("message", delivery["message_id"]),
        ("endpoint", delivery["endpoint_id"]),
        ("created", f"{delivery['created_at']} ({relative(delivery['created_at'])})"),
        ("next attempt", relative(detail["next_attempt_at"])),
    ])  # fmt: skip
    out.line()
    out.table(
        ["#", "TRIGGER", "STARTED", "TOOK", "OUTCOME", "ANSWER", "ERROR / BODY"],
        [[str(a["number"]), a["trigger"], relative(a["started_at"]),
          "-" if a["duration_ms"] is None else f"{a['duration_ms']:.0f} ms", a["outcome"],
          str(a["response"]["status"]) if a["response"] else "-", attempt_note(a)]
         for a in detail["attempts"]],
    )  # fmt: skip
    if detail["actions"]:
        out.line()
        for action in detail["actions"]:
            out.line(f"{action['action']} by {action['by']} {relative(action['at'])}")


def attempt_note(attempt: t.Attempt) -> str:
    if attempt["error"]:
        return f"{attempt['error']['kind']}: {attempt['error'].get('message') or ''}"[:80]
    if attempt["response"]:
        return str(attempt["response"]["body"]).replace("\n", " ")[:80]
    return "-"
