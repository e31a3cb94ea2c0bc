"""What the API client raises.

    ClientError                 root; every failure the client reports is one of these
     ├── ApiProblem             the API answered with an error (its problem+json document is kept)
     ├── ServerUnreachable      no answer at all: nothing listening, DNS, timeout, TLS
     └── MissingKey             no API key was given and none could be found
"""

from __future__ import annotations

from typing import Any

PROBLEM_TYPE_BASE = "https://hookpump.dev/problems/"


class ClientError(Exception):
    """Root of the client's exceptions."""

    def problem(self) -> dict[str, Any]:
        """This failure as an RFC 9457 document, for `--json` output."""
        return {"type": PROBLEM_TYPE_BASE + "client-error", "title": "Client error", "detail": str(self)}


class ApiProblem(ClientError):
    """The API refused the request; `document` is its problem+json answer as received."""

    def __init__(self, status: int, document: dict[str, Any]) -> None:
        self.status = status
        self.document = document
        super().__init__(self.detail)

    @property
    def detail(self) -> str:
        detail = self.document.get("detail") or self.document.get("title") or f"HTTP {self.status}"
        errors = [e for e in self.document.get("errors") or [] if isinstance(e, dict)]
        # The detail usually tells of the first field already; name the others.
        untold = [f"{e.get('field')}: {e.get('message')}" for e in errors if str(e.get("message")) not in str(detail)]
        return f"{detail} ({'; '.join(untold)})" if untold else str(detail)

    def problem(self) -> dict[str, Any]:
        return self.document


class ServerUnreachable(ClientError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(
            f"cannot reach hookpump at {url} ({reason}); start it (`hookpump dev`) or point "
            "--api-url / HOOKPUMP_URL at it"
        )

    def problem(self) -> dict[str, Any]:
        return {"type": PROBLEM_TYPE_BASE + "unreachable", "title": "Cannot reach the server", "detail": str(self)}


class MissingKey(ClientError):
    def __init__(self, key_file: str) -> None:
        super().__init__(
            f"no API key: pass --key, set HOOKPUMP_KEY, or run beside `hookpump dev` (it keeps one in {key_file})"
        )

    def problem(self) -> dict[str, Any]:
        return {"type": PROBLEM_TYPE_BASE + "missing-key", "title": "No API key", "detail": str(self)}
