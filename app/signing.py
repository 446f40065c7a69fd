"""Standard Webhooks signing (the scheme Svix uses) and the hex compatibility scheme. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SECRET_PREFIX = "whsec_"


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key of a secret: base64 after ``whsec_``, else the secret's UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def is_standard_secret(secret: str) -> bool:
    """True for ``whsec_`` + base64 of 24 to 64 bytes, the form API.md accepts."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        return False
    return 24 <= len(raw) <= 64


def sign_payload(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """One ``v1,<base64>`` signature of ``{id}.{timestamp}.{body}``."""
    raw = body.encode() if isinstance(body, str) else body
    to_sign = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(secret_key_bytes(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: str | bytes) -> str:
    """Space-separated signatures, one per live secret (two during a rotation's grace)."""
    return " ".join(sign_payload(s, msg_id, timestamp, body) for s in secrets)


def sign_hex(secret: str, body: str | bytes) -> str:
    """GitHub-style hex HMAC-SHA256 of the body, keyed by the secret's UTF-8 bytes as given."""
    raw = body.encode() if isinstance(body, str) else body
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def verify(secret: str, msg_id: str, timestamp: int, body: str | bytes, header: str) -> bool:
    """True when any ``v1`` signature in the header matches (for tests and receivers)."""
    expected = sign_payload(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, sig) for sig in header.split(" "))
