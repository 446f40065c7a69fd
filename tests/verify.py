"""Check a received request the way real receivers do: with the official libraries."""

from __future__ import annotations

import json
from typing import Any

from standardwebhooks.webhooks import Webhook as StandardWebhook
from svix.webhooks import Webhook as SvixWebhook


def verify_both(secret: str | bytes, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """Verify with `standardwebhooks` and with `svix` (bytes: a raw key); returns the body."""
    plain = {k.lower(): v for k, v in headers.items()}
    StandardWebhook(secret).verify(body, plain)
    SvixWebhook(secret).verify(body, plain)
    parsed: dict[str, Any] = json.loads(body)
    return parsed
