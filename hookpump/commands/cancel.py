"""`hookpump cancel`: stop queued deliveries from being sent (they can be retried later)."""

from __future__ import annotations

import click

from hookpump.commands.session import Session, api_command


@click.command(epilog="""\b
Examples:
  hookpump cancel dlv_01j..._1
  hookpump deliveries list --endpoint ep_01j... --status retrying -q | xargs hookpump cancel""")  # fmt: skip
@click.argument("delivery_ids", nargs=-1, required=True, metavar="ID...")
@api_command
def cancel(session: Session, delivery_ids: tuple[str, ...]) -> None:
    """Cancel pending or retrying deliveries: they are not sent (`hookpump retry` sends them later).

    Every ID is tried; one that has already ended is reported and the exit status is 1."""
    session.for_each_id(delivery_ids, session.client.cancel_delivery, "cancelled")
