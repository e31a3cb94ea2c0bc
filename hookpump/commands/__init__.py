"""The `hookpump` command line as one Click group: the server processes (`server.py`) and the
commands that talk to a running hookpump through its API client, one module per command group."""

from __future__ import annotations

from collections.abc import Sequence

import click

from hookpump.commands import api_keys, cancel, deliveries, endpoints, listen, retry, send, server, top

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, epilog="""\b
Examples:
  hookpump dev                                   # run everything on a laptop
  hookpump listen --port 9000                    # a receiver that prints what arrives
  hookpump endpoints create http://127.0.0.1:9000/hook --rate-limit 60
  hookpump send order.paid '{"id": 1}'
  hookpump deliveries list --status failed
  hookpump cancel dlv_01j..._1
  hookpump api-key create --name billing --scope send
  hookpump top

\b
Shell completion (bash; zsh and fish alike):
  eval "$(_HOOKPUMP_COMPLETE=bash_source hookpump)"
""")  # fmt: skip
def root() -> None:
    """Webhook delivery, paced per endpoint.

    The server commands are configured by HOOKPUMP_* variables (and a few flags). The other commands talk to a
    running hookpump: --api-url / HOOKPUMP_URL (default http://127.0.0.1:8080) and --key / HOOKPUMP_KEY
    (default: the admin key `hookpump dev` keeps in $HOOKPUMP_DATA_DIR or .hookpump/)."""


for command in (
    server.dev, server.serve, server.worker, api_keys.api_key, send.send, endpoints.endpoints,
    deliveries.deliveries, retry.retry, cancel.cancel, top.top, listen.listen,
):  # fmt: skip
    root.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """The `hookpump` command's entry point; the exit status. The server stack (uvicorn, arq, ...)
    is imported only by the server commands, so client commands start fast."""
    try:
        root.main(args=list(argv) if argv is not None else None, prog_name="hookpump")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
