"""What every API command shares: the `--url`, `--key` and `--json` options, a lazily opened
client, and the translation of client errors into one line and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import click

from hookpump.client import ApiProblem, ClientError, HookpumpClient, resolve_connection
from hookpump.client import types as t
from hookpump.commands.output import EXIT_REFUSED, Output, error_line


class Session:
    def __init__(self, url: str | None, key: str | None, as_json: bool) -> None:
        self._url, self._key = url, key
        self.output = Output(as_json)
        self._client: HookpumpClient | None = None

    @property
    def as_json(self) -> bool:
        return self.output.as_json

    @property
    def client(self) -> HookpumpClient:
        if self._client is None:
            connection = resolve_connection(self._url, self._key)
            self._client = HookpumpClient(connection.url, connection.key)
        return self._client

    def for_each_id(self, ids: Sequence[str], act: Callable[[str], t.Delivery], done: str) -> None:
        """`act` on every id in turn; a refusal of one is reported on its own line and the others are
        still tried, then the exit status says some were refused."""
        results: list[dict[str, object]] = []
        refused = False
        for ident in ids:
            try:
                delivery = act(ident)
            except ApiProblem as exc:
                refused = True
                results.append({"id": ident, "problem": exc.document})
                if not self.as_json:
                    self.output.errors.print(f"hookpump: {ident}: {error_line(exc)}", markup=False)
                continue
            results.append({"id": ident, "delivery": delivery})
            if not self.as_json:
                self.output.line(f"{ident} {done} ({delivery['status']})")
        if self.as_json:
            self.output.json(results)
        if refused:
            raise SystemExit(EXIT_REFUSED)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def api_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the connection options and a `session` as its first argument; a ClientError
    raised inside becomes one line (or a problem document with --json) and its exit code."""

    @click.option("--json", "as_json", is_flag=True, help="Print the API's JSON (errors as problem+json).")
    @click.option("--key", metavar="KEY", help="API key [default: $HOOKPUMP_KEY, else <data dir>/admin-key].")
    @click.option("--api-url", metavar="URL", help="hookpump's address [default: $HOOKPUMP_URL, else http://127.0.0.1:8080].")
    @functools.wraps(func)
    def command(api_url: str | None, key: str | None, as_json: bool, **arguments: Any) -> Any:
        session = Session(api_url, key, as_json)
        try:
            return func(session, **arguments)
        except ClientError as exc:
            session.output.fail(exc)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        finally:
            session.close()

    return command
