"""`hookpump endpoints list|show|create|update|pause|resume|delete|rotate-secret`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from hookpump.client import types as t
from hookpump.commands.output import duration, rate, relative
from hookpump.commands.session import Session, api_command


@click.group(epilog="Example: hookpump endpoints create http://127.0.0.1:9000/hook --rate-limit 60")
def endpoints() -> None:
    """Where messages go, how fast, and which event types each receives."""


def endpoint_options(func: Any) -> Any:
    """The fields `create` and `update` share."""
    options = [
        click.option("--rate-limit", "rate_limit_per_minute", type=click.IntRange(1, 60000), metavar="N",
                     help="At most N requests a minute, evenly spaced [create default: 60]."),
        click.option("--min-rate", "min_rate_per_minute", type=click.IntRange(1, 60000), metavar="N",
                     help="The adaptive pace never goes below N a minute [create default: 1]."),
        click.option("--max-in-flight", type=click.IntRange(1, 1000), metavar="N",
                     help="At most N requests open at once [create default: 10]."),
        click.option("--event-type", "event_types", multiple=True, metavar="TYPE",
                     help="Receive only this event type (repeat for several); default: every type."),
        click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                     help="An extra header sent with every request (repeat for several)."),
        click.option("--secret-header", "secret_headers", multiple=True, metavar="NAME",
                     help="Never show this header's value once set (repeat for several); Authorization, "
                          "cookies and names with key, token, secret, auth, password or signature always."),
        click.option("--description", metavar="TEXT"),
        click.option("--trace-propagation/--no-trace-propagation", default=None,
                     help="Send a W3C traceparent header [default: on]."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def endpoint_fields(session: Session, **options: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in ("rate_limit_per_minute", "min_rate_per_minute", "max_in_flight", "description", "trace_propagation"):
        if options.get(name) is not None:
            fields[name] = options[name]
    if options.get("event_types"):
        fields["event_types"] = list(options["event_types"])
    if options.get("headers"):
        headers: dict[str, str] = {}
        for header in options["headers"]:
            name, colon, value = header.partition(":")
            if not colon or not name.strip():
                session.output.usage(f"--header {header!r} needs the form 'Name: value'")
            headers[name.strip()] = value.strip()
        fields["headers"] = headers
    if options.get("secret_headers"):
        fields["secret_headers"] = list(options["secret_headers"])
    return fields


@endpoints.command("list", epilog="Example: hookpump endpoints list --json")
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids.")
@api_command
def list_endpoints(session: Session, quiet: bool) -> None:
    """List every endpoint, oldest first."""
    found = list(session.client.iter_endpoints())
    out = session.output
    if session.as_json:
        out.json(found)
    elif quiet:
        for endpoint in found:
            out.line(endpoint["id"])
    else:
        out.table(
            ["ID", "URL", "RATE", "IN FLIGHT", "EVENT TYPES", "STATE", "CREATED"],
            [[e["id"], e["url"], rate(e["rate_limit_per_minute"]), str(e["max_in_flight"]),
              ",".join(e["event_types"] or ["*"]), state(e), relative(e["created_at"])] for e in found],
        )  # fmt: skip


@endpoints.command(epilog="Example: hookpump endpoints show ep_01j...")
@click.argument("endpoint_id")
@api_command
def show(session: Session, endpoint_id: str) -> None:
    """An endpoint with its backlog, pace and pause state."""
    endpoint = session.client.get_endpoint(endpoint_id)
    stats = session.client.endpoint_stats(endpoint_id)
    if session.as_json:
        session.output.json({"endpoint": endpoint, "stats": stats})
        return
    ratio = stats["success_ratio"]
    session.output.fields([
        *endpoint_fields_shown(endpoint),
        ("backlog", f"{stats['backlog']} ({stats['due_now']} due now, longest wait "
                    f"{duration(stats['oldest_pending_age_seconds'])})"),
        ("in flight", stats["in_flight"]),
        ("pace", f"{rate(stats['effective_rate_per_minute'])} of {rate(stats['rate_limit_per_minute'])}"),
        ("paused", pause_text(stats["paused"], stats["pause_reason"], stats["paused_until"])),
        ("last hour", ", ".join(f"{n} {outcome}" for outcome, n in stats["last_hour"].items())),
        ("success", "-" if ratio is None else f"{ratio:.0%}"),
        ("drains in", duration(stats["estimated_drain_seconds"])),
    ])  # fmt: skip


@endpoints.command(epilog="""\b
Examples:
  hookpump endpoints create http://127.0.0.1:9000/hook --rate-limit 120 --event-type order.paid
  EP=$(hookpump endpoints create https://example.com/hook -q)""")  # fmt: skip
@click.argument("url", metavar="URL")
@endpoint_options
@click.option("--secret", metavar="whsec_...", help="Sign with this secret; default: a generated one.")
@click.option("--disabled", is_flag=True, help="Create it disabled (it receives nothing until enabled).")
@click.option("-q", "--quiet", is_flag=True, help="Print only the id (the secret goes to stderr).")
@api_command
def create(session: Session, url: str, secret: str | None, disabled: bool, quiet: bool, **options: Any) -> None:
    """Create an endpoint; its signing secret is shown this once."""
    fields = endpoint_fields(session, **options)
    created = session.client.create_endpoint(url, secret=secret, enabled=False if disabled else None, **fields)
    if session.as_json:
        session.output.json(created)
    elif quiet:
        session.output.line(created["id"])
        session.output.note(f"secret: {created['secret']} (shown once)")
    else:
        secret_line = ("secret", f"{created['secret']}  (shown once: keep it to verify signatures)")
        session.output.fields([*endpoint_fields_shown(created), secret_line])


@endpoints.command(epilog="Example: hookpump endpoints update ep_01j... --rate-limit 30 --all-event-types")
@click.argument("endpoint_id")
@click.option("--url", "new_url", metavar="URL", help="Deliver to this URL from now on.")
@endpoint_options
@click.option("--all-event-types", is_flag=True, help="Receive every event type again.")
@click.option("--enable/--disable", "enabled", default=None, help="Enable (also after a 410) or disable it.")
@api_command
def update(
    session: Session, endpoint_id: str, new_url: str | None, all_event_types: bool, enabled: bool | None,
    **options: Any,
) -> None:  # fmt: skip
    """Change some of an endpoint's fields (the others stay)."""
    fields = endpoint_fields(session, **options)
    if new_url is not None:
        fields["url"] = new_url
    if all_event_types:
        fields["event_types"] = None
    if enabled is not None:
        fields["enabled"] = enabled
    if not fields:
        session.output.usage("nothing to change: give at least one option (see hookpump endpoints update --help)")
    updated = session.client.update_endpoint(endpoint_id, **fields)
    session.output.json(updated) if session.as_json else show_endpoint(session, updated)


@endpoints.command(epilog="Example: hookpump endpoints pause ep_01j... --for 10m")
@click.argument("endpoint_id")
@click.option("--for", "pause_for", metavar="DURATION", help="Resume by itself after this long (30s, 10m, 2h).")
@api_command
def pause(session: Session, endpoint_id: str, pause_for: str | None) -> None:
    """Stop sending to an endpoint until it is resumed (new messages still queue)."""
    until = None
    if pause_for is not None:
        seconds = parse_duration(session, pause_for)
        until = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
    show_flow(session, session.client.pause_endpoint(endpoint_id, until=until))


@endpoints.command(epilog="Example: hookpump endpoints resume ep_01j...")
@click.argument("endpoint_id")
@api_command
def resume(session: Session, endpoint_id: str) -> None:
    """Send to an endpoint again (ends an operator's pause or a 429/503 backoff)."""
    show_flow(session, session.client.resume_endpoint(endpoint_id))


@endpoints.command(epilog="Example: hookpump endpoints delete ep_01j...")
@click.argument("endpoint_id")
@api_command
def delete(session: Session, endpoint_id: str) -> None:
    """Delete an endpoint; its queued deliveries are cancelled."""
    session.client.delete_endpoint(endpoint_id)
    if session.as_json:
        session.output.json({"id": endpoint_id, "deleted": True})
    else:
        session.output.line(f"deleted {endpoint_id}")


@endpoints.command("rotate-secret", epilog="Example: hookpump endpoints rotate-secret ep_01j...")
@click.argument("endpoint_id")
@click.option("--secret", metavar="whsec_...", help="The new secret; default: a generated one.")
@api_command
def rotate_secret(session: Session, endpoint_id: str, secret: str | None) -> None:
    """Sign with a new secret; the old ones keep signing too for a grace period."""
    rotated = session.client.rotate_secret(endpoint_id, secret)
    if session.as_json:
        session.output.json(rotated)
        return
    session.output.fields([
        ("secret", f"{rotated['secret']}  (shown once)"),
        ("old secrets sign until", f"{rotated['previous_secrets_valid_until']} "
                                    f"({relative(rotated['previous_secrets_valid_until'])})"),
    ])  # fmt: skip


def show_endpoint(session: Session, endpoint: t.Endpoint) -> None:
    session.output.fields(endpoint_fields_shown(endpoint))


def endpoint_fields_shown(endpoint: t.Endpoint) -> list[tuple[str, Any]]:
    return [
        ("id", endpoint["id"]), ("url", endpoint["url"]),
        ("rate limit", rate(endpoint["rate_limit_per_minute"])),
        ("minimum pace", rate(endpoint.get("min_rate_per_minute", 1))), ("max in flight", endpoint["max_in_flight"]),
        ("event types", ", ".join(endpoint["event_types"] or ["* (every type)"])),
        ("headers", ", ".join(f"{k}: {v}" for k, v in endpoint["headers"].items()) or "-"),
        ("description", endpoint["description"] or "-"), ("state", state(endpoint)),
        ("created", f"{endpoint['created_at']} ({relative(endpoint['created_at'])})"),
    ]  # fmt: skip


def show_flow(session: Session, endpoint: t.EndpointWithFlow) -> None:
    flow = endpoint["flow"]
    if session.as_json:
        session.output.json(endpoint)
        return
    session.output.fields([
        ("id", endpoint["id"]), ("paused", pause_text(flow["paused"], flow["pause_reason"], flow["paused_until"])),
        ("pace", rate(flow["effective_rate_per_minute"])),
    ])  # fmt: skip


def state(endpoint: t.Endpoint) -> str:
    if endpoint["enabled"]:
        return "enabled"
    return f"disabled ({endpoint['disabled_reason']})" if endpoint["disabled_reason"] else "disabled"


def pause_text(paused: bool, reason: str | None, until: str | None) -> str:
    if not paused:
        return "no"
    return f"{reason or 'yes'}" + (f" until {relative(until)}" if until else " until resumed")


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(session: Session, text: str) -> float:
    try:
        unit = text[-1] if text[-1] in UNITS else "s"
        return float(text.rstrip("smhd")) * UNITS[unit]
    except (ValueError, IndexError):
        session.output.usage(f"{text!r} is not a duration: write a number with s, m, h or d (e.g. 10m)")
