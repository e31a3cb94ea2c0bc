"""`hookpump dev|serve|worker|api-key`: the processes themselves (hookpump/cli.py runs them)."""

from __future__ import annotations

import click

from core.models import Scope


def _run(command: str, *, name: str = "", scopes: frozenset[Scope] = frozenset()) -> None:
    from hookpump import cli  # the server stack loads only for the commands that need it

    raise SystemExit(cli.run_server_command(command, name=name, scopes=scopes))


@click.command(epilog="Example: hookpump dev   (then, in another terminal: hookpump listen)")
def dev() -> None:
    """API, worker and an embedded Redis in one process, for a laptop.

    Allows loopback receivers, logs text, and keeps an admin key in <data dir>/admin-key that the
    other commands find by themselves when run beside it."""
    _run("dev")


@click.command(epilog="Example: HOOKPUMP_REDIS_URL=redis://localhost:6379/0 hookpump serve")
def serve() -> None:
    """The HTTP API only (needs HOOKPUMP_REDIS_URL)."""
    _run("serve")


@click.command(epilog="Example: HOOKPUMP_REDIS_URL=redis://localhost:6379/0 hookpump worker")
def worker() -> None:
    """The delivery worker and pump (needs HOOKPUMP_REDIS_URL).

    SIGTERM lets in-flight requests finish; a second signal exits at once."""
    _run("worker")


@click.group(name="api-key")
def api_key() -> None:
    """Manage API keys directly in Redis."""


@api_key.command(epilog="Example: hookpump api-key create --name billing --scope send --scope read")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option(
    "--scope", "scopes", required=True, multiple=True, type=click.Choice([scope.value for scope in Scope]),
    help="admin, send or read; repeat for several.",
)  # fmt: skip
def create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key (stored hashed) and print it, once (needs HOOKPUMP_REDIS_URL)."""
    _run("api-key create", name=name, scopes=frozenset(Scope(scope) for scope in scopes))
