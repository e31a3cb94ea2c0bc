"""What `hookpump dev` adds for a laptop: its defaults, a remembered admin key, and the start-up banner.

The embedded Redis itself lives in `embedded_redis.py`; running the API and worker is `cli.py`'s job.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from core.durability import Durability
from core.history import default_sqlite_path
from core.settings import PREFIX, Settings
from hookpump.embedded_redis import EmbeddedRedis

# Defaults for a laptop; a HOOKPUMP_* variable that is set still wins. Receivers there are on
# loopback, which production refuses to deliver to; a laptop's messages are not worth an fsync each.
DEV_DEFAULTS: dict[str, Any] = {"allow_private_targets": True, "log_format": "text", "durability": Durability.FAST}
ADMIN_KEY_FILE = "admin-key"


def dev_settings(environ: Mapping[str, str]) -> Settings:
    defaults = {
        field: value for field, value in DEV_DEFAULTS.items() if not environ.get(PREFIX + field.upper())
    }
    settings = Settings.from_env(environ, **defaults)
    if settings.database_url is None:
        # A laptop needs nothing installed: history in a SQLite file beside the embedded Redis's data.
        settings = settings.replace(database_url="sqlite:///" + default_sqlite_path(settings))
    return settings


def load_or_create_admin_key(data_dir: str | os.PathLike[str]) -> str:
    """The key in `<data_dir>/admin-key`, created (mode 0600) on the first run and reused after."""
    directory = Path(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
        path.unlink()
    key = "hp_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another `hookpump dev` on this directory won the race: use its key
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    return key


def redacted(url: str) -> str:
    """`url` without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def banner(settings: Settings, embedded: EmbeddedRedis | None) -> str:
    """The lines `hookpump dev` prints on start; the one place a key is ever printed (a laptop's own)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(settings.host, settings.host)
    if embedded is not None and embedded.url is not None:
        redis = f"{embedded.url} (embedded redis-server pid {embedded.pid}, files in {embedded.directory})"
    else:
        redis = redacted(settings.redis_url or "")
    return "\n".join([
        "hookpump dev",
        f"  API:       http://{host}:{settings.port}",
        f"  console:   http://{host}:{settings.port}/ui/ (sign in with the admin key)",
        f"  Redis:     {redis}",
        f"  admin key: {settings.api_key}",
    ])  # fmt: skip
