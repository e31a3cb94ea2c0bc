"""`hookpump api-key create|list|delete`: API keys, managed through the API (admin scope) like
every other command, so they work beside `hookpump dev` with nothing but its data directory."""

from __future__ import annotations

import click

from hookpump.client import types as t
from hookpump.commands.output import relative
from hookpump.commands.session import Session, api_command


@click.group(name="api-key", epilog="Example: hookpump api-key create --name billing --scope send --scope read")
def api_key() -> None:
    """Keys for other programs, each with its scopes (needs an admin key)."""


@api_key.command(epilog="""\b
Examples:
  hookpump api-key create --name billing --scope send --scope read
  export HOOKPUMP_KEY=$(hookpump api-key create --name ci --scope read)""")  # fmt: skip
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--scope", "scopes", required=True, multiple=True, type=click.Choice(t.API_KEY_SCOPES),
    help="admin, send or read; repeat for several.",
)  # fmt: skip
@api_command
def create(session: Session, name: str, scopes: tuple[str, ...]) -> None:
    """Create a key and print it, once: hookpump keeps only its hash."""
    created = session.client.create_api_key(name, sorted(set(scopes)))
    if session.as_json:
        session.output.json(created)
        return
    session.output.note(
        f"created API key {created['id']} ({created['name']}, scopes: {', '.join(created['scopes'])}); "
        "it is shown once, below"
    )
    session.output.line(created["key"])


@api_key.command("list", epilog="Example: hookpump api-key list --json")
@click.option("-q", "--quiet", is_flag=True, help="Print only the ids.")
@api_command
def list_keys(session: Session, quiet: bool) -> None:
    """Every key's id, name, scopes and age, oldest first (never the keys themselves)."""
    found = list(session.client.iter_api_keys())
    out = session.output
    if session.as_json:
        out.json(found)
    elif quiet:
        for key in found:
            out.line(key["id"])
    else:
        out.table(
            ["ID", "NAME", "SCOPES", "CREATED"],
            [[k["id"], k["name"], ",".join(k["scopes"]), relative(k["created_at"])] for k in found],
        )


@api_key.command(epilog="Example: hookpump api-key delete key_01j...")
@click.argument("key_ids", nargs=-1, required=True, metavar="ID...")
@api_command
def delete(session: Session, key_ids: tuple[str, ...]) -> None:
    """Delete keys: each stops working at once (within 5 s on other API processes)."""
    for key_id in key_ids:
        session.client.delete_api_key(key_id)
        if not session.as_json:
            session.output.line(f"deleted {key_id}")
    if session.as_json:
        session.output.json({"deleted": list(key_ids)})
