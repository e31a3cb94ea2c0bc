"""Schema versions: numbered, append-only `NNNN_name.sql` files beside each adapter. A migration is
never edited once released; a change is a new file. Each adapter applies what is missing under its
own lock (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite) and records it in
`hp_schema_migrations`, so processes starting together apply each file once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from core.errors import HistorySchemaTooNew

FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

# Created by the runner itself, before any migration (it records them).
LEDGER = ("CREATE TABLE IF NOT EXISTS hp_schema_migrations "
          "(version integer PRIMARY KEY, name text NOT NULL, applied_ms bigint NOT NULL)")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file split on `;` at line ends (migrations keep one statement per `;`-ended block)."""
        return [part.strip() for part in re.split(r";\s*\n", self.sql + "\n") if part.strip()]


def migrations_of(package: str) -> list[Migration]:
    """The migrations in `<package>/migrations/`, in version order."""
    found = []
    for entry in resources.files(package).joinpath("migrations").iterdir():
        match = FILE_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{package} migrations must be numbered 0001, 0002, ... without gaps: {versions}")
    return found


def pending(known: list[Migration], applied: set[int], where: str) -> list[Migration]:
    """The migrations still to apply; refuses a database that newer code has migrated."""
    newest = max((m.version for m in known), default=0)
    ahead = sorted(v for v in applied if v > newest)
    if ahead:
        raise HistorySchemaTooNew(
            f"the history database ({where}) has schema version {ahead[-1]}, but this hookpump knows only up "
            f"to {newest}: it was migrated by a newer hookpump. Upgrade this one (or point "
            "HOOKPUMP_DATABASE_URL at another database); hookpump never downgrades a schema."
        )
    return [m for m in known if m.version not in applied]
