"""`hookpump send`: one message from the command line, or a batch from a JSON-lines file or stdin."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from hookpump.client import types as t
from hookpump.commands.output import counted
from hookpump.commands.session import Session, api_command

# The server's default HOOKPUMP_MAX_BATCH_MESSAGES; larger inputs go in several requests.
BATCH_SIZE = 1000


@click.command(epilog="""\b
Examples:
  hookpump send order.paid '{"id": 1, "total": 9.5}'
  echo '{"id": 2}' | hookpump send order.paid -
  hookpump send order.paid '{"id": 3}' --endpoint ep_01j... --idempotency-key order-3
  hookpump send --batch events.jsonl        # each line: {"event_type": ..., "payload": ...}
  hookpump send order.paid --batch ids.jsonl  # each line: a payload of type order.paid
""")  # fmt: skip
@click.argument("event_type", required=False)
@click.argument("payload", required=False)
@click.option("--endpoint", "endpoint_ids", multiple=True, metavar="ID",
              help="Deliver to this endpoint only (repeat for several); default: every subscribed endpoint.")
@click.option("--idempotency-key", metavar="KEY", help="Repeating the request with this key stores nothing new.")
@click.option("--batch", "batch_file", metavar="FILE",
              help="Send every line of this JSON-lines file ('-': stdin) as a message, all or nothing per 1,000.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the message ids.")
@api_command
def send(
    session: Session, event_type: str | None, payload: str | None, endpoint_ids: tuple[str, ...],
    idempotency_key: str | None, batch_file: str | None, quiet: bool,
) -> None:  # fmt: skip
    """Send a message: EVENT_TYPE and a JSON PAYLOAD ('-' reads it from stdin; default {}).

    It fans out to every enabled endpoint subscribed to EVENT_TYPE, or goes to the --endpoint ones."""
    out = session.output
    if batch_file is not None:
        if payload is not None:
            out.usage("give either PAYLOAD or --batch, not both")
        messages = list(read_batch(session, batch_file, event_type, endpoint_ids))
        if not messages:
            out.usage(f"{batch_file} holds no messages; write one JSON object per line")
        accepted: list[t.MessageAccepted] = []
        for start in range(0, len(messages), BATCH_SIZE):
            key = idempotency_key and (f"{idempotency_key}-{start // BATCH_SIZE}" if start else idempotency_key)
            batch = session.client.send_batch(messages[start : start + BATCH_SIZE], idempotency_key=key or None)
            accepted += batch["messages"]
        report(session, accepted, quiet, document={"messages": accepted})
        return
    if event_type is None:
        out.usage("name the EVENT_TYPE to send (for example: hookpump send order.paid '{\"id\": 1}'), or use --batch")
    body = parse_json(session, sys.stdin.read() if payload == "-" else (payload or "{}"), "PAYLOAD")
    answer = session.client.send_message(
        event_type, body, endpoint_ids=endpoint_ids or None, idempotency_key=idempotency_key
    )
    report(session, [answer], quiet, document=answer)


def read_batch(
    session: Session, path: str, event_type: str | None, endpoint_ids: tuple[str, ...]
) -> Iterator[dict[str, Any]]:
    try:
        stream: IO[str] = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as exc:
        session.output.usage(f"cannot read --batch {path}: {exc.strerror}")
    with stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            value = parse_json(session, line, f"line {number} of {path}")
            if event_type is not None:
                message: dict[str, Any] = {"event_type": event_type, "payload": value}
            elif isinstance(value, dict) and "event_type" in value:
                message = value
            else:
                session.output.usage(
                    f"line {number} of {path} is not a message: write {{\"event_type\": ..., \"payload\": ...}}, "
                    "or give EVENT_TYPE to send each line as a payload"
                )
            if endpoint_ids and "endpoint_ids" not in message:
                message["endpoint_ids"] = list(endpoint_ids)
            yield message


def parse_json(session: Session, text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        session.output.usage(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "quote it for the shell, e.g. '{\"id\": 1}'"
        )


def report(session: Session, accepted: list[t.MessageAccepted], quiet: bool, document: Any) -> None:
    out = session.output
    if session.as_json:
        out.json(document)
        return
    for message in accepted:
        if quiet:
            out.line(message["id"])
            continue
        deliveries = message["deliveries"]
        targets = ", ".join(f"{d['id']} -> {d['endpoint_id']}" for d in deliveries) or "no endpoint subscribed"
        how_many = counted(len(deliveries), "delivery", "deliveries")
        out.line(f"sent {message['id']} ({message['event_type']}): {how_many}: {targets}")
