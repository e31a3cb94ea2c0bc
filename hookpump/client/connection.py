"""Where the API is and which key to use: flags, then HOOKPUMP_URL / HOOKPUMP_KEY, then what
`hookpump dev` leaves in its data directory (its admin key) and listens on (HOOKPUMP_HOST/PORT)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hookpump.client.errors import MissingKey

URL_VARIABLE = "HOOKPUMP_URL"
KEY_VARIABLE = "HOOKPUMP_KEY"
# Read here only to find a `hookpump dev` running beside us; the server owns their meaning.
DATA_DIR_VARIABLE = "HOOKPUMP_DATA_DIR"
DEFAULT_DATA_DIR = ".hookpump"
ADMIN_KEY_FILE = "admin-key"


@dataclass(frozen=True)
class Connection:
    url: str
    key: str


def resolve_connection(
    url: str | None = None, key: str | None = None, environ: Mapping[str, str] | None = None
) -> Connection:
    """The API's base URL and key; raises MissingKey when no key is found anywhere."""
    env = os.environ if environ is None else environ
    url = url or env.get(URL_VARIABLE) or _dev_url(env)
    key = key or env.get(KEY_VARIABLE)
    if not key:
        key_file = Path(env.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR) / ADMIN_KEY_FILE
        try:
            key = key_file.read_text(encoding="utf-8").strip()
        except OSError:
            key = ""
        if not key:
            raise MissingKey(str(key_file))
    return Connection(url=url.rstrip("/"), key=key)


def _dev_url(env: Mapping[str, str]) -> str:
    host = env.get("HOOKPUMP_HOST") or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    return f"http://{host}:{env.get('HOOKPUMP_PORT') or 8080}"
