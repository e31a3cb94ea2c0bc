"""Which header values are credentials, and how they are hidden wherever headers are shown: endpoint
answers, the console, attempt records and logs. Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping

# What a hidden value reads as. An endpoint update that sends it back as a value keeps the stored one,
# so a GET-modify-PUT round trip does not destroy a credential.
REDACTED = "[redacted]"

# Exact names whose values are credentials, plus fragments that mark one in any other name.
SENSITIVE_HEADERS = frozenset(
    {"webhook-signature", "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
SENSITIVE_FRAGMENTS = ("secret", "token", "key", "auth", "password", "signature")


def is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or any(fragment in lowered for fragment in SENSITIVE_FRAGMENTS)


def is_write_only(name: str, secret_names: Collection[str] = ()) -> bool:
    """A credential by its name, or one the endpoint's owner marked secret (`secret_names`, lower case)."""
    return is_sensitive(name) or name.lower() in secret_names


def redact(headers: Mapping[str, str], secret_names: Collection[str] = ()) -> dict[str, str]:
    """A copy fit for showing: write-only values replaced by REDACTED, names kept."""
    return {name: REDACTED if is_write_only(name, secret_names) else value for name, value in headers.items()}
