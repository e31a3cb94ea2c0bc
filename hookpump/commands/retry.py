"""`hookpump retry`: send deliveries again, by id or as a bulk job by filter (followed to its end)."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hookpump.client import types as t
from hookpump.commands.filters import TIME_HELP, time_filter
from hookpump.commands.session import Session, api_command

POLL_INTERVAL = 0.5


@click.command(epilog="""\b
Examples:
  hookpump retry dlv_01j..._1 dlv_01j..._2
  hookpump retry --status failed --endpoint ep_01j... --since 2h
  hookpump retry --status failed --status cancelled --event-type order.paid --no-wait""")  # fmt: skip
@click.argument("delivery_ids", nargs=-1, metavar="[ID]...")
@click.option("--status", "statuses", multiple=True, type=click.Choice(t.RETRYABLE_STATUSES),
              help="Bulk: deliveries in this status (repeat for several) [default: failed].")
@click.option("--endpoint", "endpoint_id", metavar="ID", help="Bulk: only to this endpoint.")
@click.option("--event-type", metavar="TYPE", help="Bulk: only of this event type.")
@click.option("--since", metavar="TIME", help="Bulk: created at or after: " + TIME_HELP)
@click.option("--until", metavar="TIME", help="Bulk: created at or before: " + TIME_HELP)
@click.option("--wait/--no-wait", default=True, show_default=True, help="Bulk: follow the job until it is done.")
@api_command
def retry(
    session: Session, delivery_ids: tuple[str, ...], statuses: tuple[str, ...], endpoint_id: str | None,
    event_type: str | None, since: str | None, until: str | None, wait: bool,
) -> None:  # fmt: skip
    """Send ended deliveries again: the IDs given, or every one matching a filter (a bulk job).

    Retried deliveries still wait for their endpoint's pace and pauses."""
    bulk = bool(statuses or endpoint_id or event_type or since or until)
    if delivery_ids and bulk:
        session.output.usage("give delivery IDs or a filter (--status, --endpoint, ...), not both")
    if not delivery_ids and not bulk:
        session.output.usage("give delivery IDs, or a filter such as --status failed for a bulk retry")
    if delivery_ids:
        session.for_each_id(delivery_ids, session.client.retry_delivery, "queued again")
        return
    accepted = session.client.start_bulk_retry(
        endpoint_id=endpoint_id, status=statuses, event_type=event_type, since=time_filter(since),
        until=time_filter(until),
    )  # fmt: skip
    if not wait:
        session.output.json(accepted) if session.as_json else session.output.line(f"started {accepted['id']}")
        return
    job = follow(session, accepted)
    if session.as_json:
        session.output.json(job)
    else:
        session.output.line(
            f"{job['id']} done: {job['matched']} matched, {job['queued']} queued again, {job['skipped']} skipped"
        )


def follow(session: Session, accepted: t.BulkRetryAccepted) -> t.BulkRetry:
    """Poll the job until it is done, with a progress bar on a terminal."""
    stderr = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, disable=not sys.stderr.isatty() or session.as_json) as progress:
        task = progress.add_task(f"retrying ({accepted['id']})", total=accepted["matched_estimate"])
        while True:
            job = session.client.get_bulk_retry(accepted["id"])
            total = job["matched"] if job["state"] == "done" else max(job["matched"], accepted["matched_estimate"] or 0)
            progress.update(task, completed=job["queued"] + job["skipped"], total=total or None)
            if job["state"] == "done":
                return job
            time.sleep(POLL_INTERVAL)
