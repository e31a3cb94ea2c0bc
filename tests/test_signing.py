"""Standard Webhooks signatures, checked by the independent `standardwebhooks` package."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.errors import InvalidInput
from delivery.request import build_headers
from delivery.signing import decode_secret, generate_secret, sign

BODY = json.dumps({"type": "order.created", "data": {"id": "ord_1", "name": "Zoë"}}, separators=(",", ":"))


def signed(secrets: list[str], body: str = BODY) -> dict[str, str]:
    return build_headers(
        msg_id="msg_2k1",
        timestamp=int(time.time()),
        body=body.encode(),
        secrets=secrets,
        extra_headers={},
        user_agent="test",
        traceparent=None,
    )


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(decode_secret(first)) == 32


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = generate_secret()
    headers = signed([secret])
    assert Webhook(secret).verify(BODY.encode(), headers) == json.loads(BODY)


def test_each_of_two_secrets_verifies_during_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    headers = signed([old, new])
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY.encode(), headers)
    Webhook(new).verify(BODY.encode(), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY.encode(), headers)


def test_signature_covers_the_exact_body_bytes() -> None:
    secret = generate_secret()
    headers = signed([secret])
    reserialised = json.dumps(json.loads(BODY))  # same JSON value, different bytes
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(reserialised.encode(), headers)


def test_sign_matches_the_documented_construction() -> None:
    key = bytes(range(24))
    secret = "whsec_" + base64.b64encode(key).decode()
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(key, b"msg_1.1700000000.{}", hashlib.sha256).digest()).decode()
    assert sign([secret], "msg_1", 1700000000, b"{}") == f"v1,{expected}"


def test_sign_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        sign([], "msg_1", 1, b"{}")


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "whsec_",
        "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0",  # no prefix
        "whsec_not base64!",
        "whsec_" + base64.b64encode(b"x" * 23).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
        "whsec_" + base64.b64encode(b"x" * 32).decode()[:-1],  # broken padding
    ],
)
def test_malformed_secret_is_rejected_without_echoing_it(secret: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        decode_secret(secret)
    assert caught.value.field == "secret"
    if len(secret) > len("whsec_"):
        assert secret[len("whsec_") :] not in str(caught.value)


@pytest.mark.parametrize("size", [24, 32, 64])
def test_secret_lengths_within_bounds_are_accepted(size: int) -> None:
    assert decode_secret("whsec_" + base64.b64encode(b"k" * size).decode()) == b"k" * size
