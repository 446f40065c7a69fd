"""What a webhook may be created or changed with (shared by the API and the dashboard)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.signing import is_standard_secret

EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers Herald sets itself; a custom header must not replace them.
RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "user-agent",
    "host",
    "connection",
    "transfer-encoding",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
}

EventTypeName = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=EVENT_TYPE_PATTERN)
]
Subscription = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=100, pattern=r"^(\*|" + EVENT_TYPE_PATTERN[1:-1] + ")$"
    ),
]


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http or https URL")
    if any(c.isspace() for c in url):
        raise ValueError("must not contain spaces")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    return url


def check_header_name(name: str) -> str:
    if not TOKEN.match(name):
        raise ValueError(f"{name!r} is not a valid header name")
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith("herald-"):
        raise ValueError(f"{name!r} is set by Herald and cannot be overridden")
    return name


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > 20:
        raise ValueError("at most 20 headers")
    for name, value in headers.items():
        check_header_name(name)
        if "\r" in value or "\n" in value or len(value) > 1000:
            raise ValueError(f"value of {name!r} must be one line of at most 1000 characters")
    return headers


class SignatureSpec(BaseModel):
    """How a webhook is signed beyond Standard Webhooks (API.md, compatibility signatures)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scheme: Literal["standard", "hmac-sha256-hex"] = "standard"
    header: str = Field(default="X-Webhook-Signature", min_length=1, max_length=100)
    prefix: str = Field(default="", max_length=32)

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        return check_header_name(value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("must be printable")
        return value


class _WebhookFields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str | None = Field(default=None, max_length=2048)
    events: list[Subscription] | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=1000)
    headers: dict[str, str] | None = None
    rate_limit: int | None = Field(default=None, ge=1, le=100_000)
    signature: SignatureSpec | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_headers(value)


class WebhookCreate(_WebhookFields):
    url: str = Field(max_length=2048)
    events: list[Subscription] = Field(min_length=1, max_length=500)
    secret: str | None = Field(default=None, min_length=8, max_length=300)
    status: Literal["active", "pending"] = "active"

    def check_secret(self) -> None:
        """A plain-text secret is only for webhooks signed with the hex scheme."""
        if self.secret is None or is_standard_secret(self.secret):
            return
        if self.signature is None or self.signature.scheme == "standard":
            raise ValueError(
                "must be whsec_ followed by base64 of 24 to 64 bytes "
                "(plain secrets need signature.scheme hmac-sha256-hex)"
            )
        if not self.secret.isprintable():
            raise ValueError("must be printable")


class WebhookUpdate(_WebhookFields):
    status: Literal["active", "disabled", "pending"] | None = None


class WebhookTest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    webhook_id: str = Field(min_length=1, max_length=40)
    event_type: EventTypeName = "herald.test"


class Recover(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime


class Rotate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    secret: str | None = Field(default=None, min_length=8, max_length=300)
