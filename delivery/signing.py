"""Standard Webhooks signing: `whsec_` secrets and the `webhook-signature` header value.

Signed content is `{msg_id}.{timestamp}.{raw body}`, HMAC-SHA256 with the decoded secret; one
`v1,<base64>` entry per valid secret so that receivers keep verifying while a secret is rotated.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import secrets as random_source
from collections.abc import Sequence

from core.errors import InvalidInput

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random_source.token_bytes(SECRET_BYTES)).decode("ascii")


# Every request of an endpoint signs with the same few secrets; decoding them once is measurable at
# thousands of deliveries a second. Failures are not cached (lru_cache does not cache exceptions).
@functools.lru_cache(maxsize=4096)
def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; InvalidInput("secret", ...) if malformed. The message
    never repeats the secret."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise InvalidInput("secret", f"must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("secret", f"the part after {SECRET_PREFIX!r} must be standard base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidInput("secret", f"must decode to {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes, not {len(key)}")
    return key


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: space-separated `v1,<base64>` entries, one per secret.
    `body` must be the exact bytes sent. Raises ValueError if `secrets` is empty."""
    if not secrets:
        raise ValueError("at least one signing secret is needed")
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(decode_secret(secret), content, "sha256")).decode("ascii")
        for secret in secrets
    )
