"""`hookpump dev|serve|worker`: the processes themselves (hookpump/cli.py runs them)."""

from __future__ import annotations

import os
from typing import Any

import click


def _run(command: str, **flags: Any) -> None:
    """Run a server command; a flag given wins over its HOOKPUMP_* variable (Settings reads only those)."""
    from hookpump import cli  # the server stack loads only for the commands that need it

    environ = dict(os.environ)
    environ.update({"HOOKPUMP_" + name.upper(): str(value) for name, value in flags.items() if value is not None})
    raise SystemExit(cli.run_server_command(command, environ))


def listen_options(func: Any) -> Any:
    """--host and --port, shared by the commands that serve the API."""
    func = click.option("--port", type=click.IntRange(1, 65535), metavar="PORT",
                        help="Port of the API and console [default: $HOOKPUMP_PORT, else 8080].")(func)  # fmt: skip
    return click.option("--host", metavar="ADDRESS",
                        help="Address to listen on [default: $HOOKPUMP_HOST, else 127.0.0.1].")(func)  # fmt: skip


@click.command(epilog="""\b
Examples:
  hookpump dev                                   (then, in another terminal: hookpump listen)
  hookpump dev --port 9090 --data-dir /tmp/hp    (other commands then need HOOKPUMP_URL=http://127.0.0.1:9090
                                                  and HOOKPUMP_DATA_DIR=/tmp/hp to find it)""")  # fmt: skip
@listen_options
@click.option("--data-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where the embedded Redis, the SQLite history and the admin key live "
                   "[default: $HOOKPUMP_DATA_DIR, else .hookpump].")  # fmt: skip
def dev(host: str | None, port: int | None, data_dir: str | None) -> None:
    """API, worker and an embedded Redis in one process, for a laptop.

    Allows loopback receivers, logs text, and keeps an admin key in <data dir>/admin-key that the
    other commands find by themselves when run beside it. Every other setting is a HOOKPUMP_* variable
    (HOOKPUMP_REDIS_URL uses that Redis instead of starting one)."""
    _run("dev", host=host, port=port, data_dir=data_dir)


@click.command(epilog="Example: HOOKPUMP_REDIS_URL=redis://localhost:6379/0 hookpump serve --port 8080")
@listen_options
def serve(host: str | None, port: int | None) -> None:
    """The HTTP API only (needs HOOKPUMP_REDIS_URL)."""
    _run("serve", host=host, port=port)


@click.command(epilog="Example: HOOKPUMP_REDIS_URL=redis://localhost:6379/0 hookpump worker")
def worker() -> None:
    """The delivery worker and pump (needs HOOKPUMP_REDIS_URL).

    SIGTERM lets in-flight requests finish; a second signal exits at once."""
    _run("worker")
