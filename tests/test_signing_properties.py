"""Property tests: whatever Herald signs verifies with the official `standardwebhooks` library,
and any change of id, timestamp, body or secret makes verification fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.signing import is_standard_secret, sign_hex, sign_payload, signature_header, verify

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

keys = st.binary(min_size=24, max_size=64)
# Ids travel in a header: visible ASCII, as Herald's evt_ ids and producers' ids are.
ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)
bodies = st.text(max_size=2000).map(str.encode)
# Within the library's 5-minute tolerance of the wall clock.
offsets = st.integers(min_value=-240, max_value=240)


def whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


def headers(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def official_accepts(secret: str, body: bytes, sent: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, sent, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


@PROPERTY
@given(key=keys, msg_id=ids, body=bodies, offset=offsets)
def test_it_signs_what_the_official_library_verifies(
    key: bytes, msg_id: str, body: bytes, offset: int
) -> None:
    secret = whsec(key)
    timestamp = int(time.time()) + offset
    signature = sign_payload(secret, msg_id, timestamp, body)

    assert is_standard_secret(secret)
    assert official_accepts(secret, body, headers(msg_id, timestamp, signature))
    assert verify(secret, msg_id, timestamp, body, signature)


@PROPERTY
@given(key=keys, old_key=keys, msg_id=ids, body=bodies)
def test_it_signs_with_both_secrets_during_a_rotation(
    key: bytes, old_key: bytes, msg_id: str, body: bytes
) -> None:
    timestamp = int(time.time())
    header = signature_header([whsec(key), whsec(old_key)], msg_id, timestamp, body)

    assert len(header.split(" ")) == 2
    for secret in (whsec(key), whsec(old_key)):
        assert official_accepts(secret, body, headers(msg_id, timestamp, header))


@PROPERTY
@given(key=keys, msg_id=ids, other_id=ids, body=bodies)
def test_it_fails_when_the_id_changes(key: bytes, msg_id: str, other_id: str, body: bytes) -> None:
    assume(other_id != msg_id)
    timestamp = int(time.time())
    signature = sign_payload(whsec(key), msg_id, timestamp, body)
    assert not official_accepts(whsec(key), body, headers(other_id, timestamp, signature))


@PROPERTY
@given(key=keys, msg_id=ids, body=bodies, shift=offsets.filter(lambda s: s != 0))
def test_it_fails_when_the_timestamp_changes(
    key: bytes, msg_id: str, body: bytes, shift: int
) -> None:
    timestamp = int(time.time())
    signature = sign_payload(whsec(key), msg_id, timestamp, body)
    moved = headers(msg_id, timestamp + shift, signature)
    assert not official_accepts(whsec(key), body, moved)


@PROPERTY
@given(key=keys, msg_id=ids, body=bodies, other=bodies)
def test_it_fails_when_the_body_changes(key: bytes, msg_id: str, body: bytes, other: bytes) -> None:
    assume(other != body)
    timestamp = int(time.time())
    signature = sign_payload(whsec(key), msg_id, timestamp, body)
    assert not official_accepts(whsec(key), other, headers(msg_id, timestamp, signature))
    assert not verify(whsec(key), msg_id, timestamp, other, signature)


@PROPERTY
@given(key=keys, other_key=keys, msg_id=ids, body=bodies)
def test_it_fails_with_another_secret(
    key: bytes, other_key: bytes, msg_id: str, body: bytes
) -> None:
    assume(other_key != key)
    timestamp = int(time.time())
    signature = sign_payload(whsec(key), msg_id, timestamp, body)
    assert not official_accepts(whsec(other_key), body, headers(msg_id, timestamp, signature))


@PROPERTY
@given(key=keys, msg_id=ids, body=bodies, position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_it_fails_when_one_bit_of_the_signature_flips(
    key: bytes, msg_id: str, body: bytes, position: int, bit: int
) -> None:
    timestamp = int(time.time())
    raw = bytearray(base64.b64decode(sign_payload(whsec(key), msg_id, timestamp, body)[3:]))
    raw[position % len(raw)] ^= 1 << bit
    forged = "v1," + base64.b64encode(bytes(raw)).decode()
    assert not official_accepts(whsec(key), body, headers(msg_id, timestamp, forged))


@PROPERTY
@given(secret=st.text(min_size=8, max_size=80), body=bodies)
def test_it_signs_the_hex_scheme_with_the_secret_as_given(secret: str, body: bytes) -> None:
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert sign_hex(secret, body) == expected


@pytest.mark.parametrize("size", [0, 8, 23, 65])
def test_it_does_not_take_secrets_of_the_wrong_size_for_standard_ones(size: int) -> None:
    assert not is_standard_secret(whsec(bytes(size)))
