"""The webhook form: from posted fields to the API's body shape, and errors back to fields."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from werkzeug.datastructures import MultiDict

from app.models import Endpoint, EventType

SCHEMES = ("standard", "hmac-sha256-hex")
# pydantic's wording speaks to programmers; the form speaks to admins.
PLAINER = {
    "String should have at least 1 character": "Required.",
    "Field required": "Required.",
    "List should have at least 1 item": "Pick at least one event type, or all events.",
    "Input should be 'standard' or 'hmac-sha256-hex'": "Pick a signature scheme.",
}


@dataclass
class WebhookForm:
    """What the admin typed, kept to fill the form again beside its errors."""

    url: str = ""
    description: str = ""
    events: list[str] = field(default_factory=list)
    headers: str = ""
    scheme: str = "standard"
    sig_header: str = "X-Webhook-Signature"
    sig_prefix: str = ""
    secret: str = ""

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> WebhookForm:
        sig = endpoint.signature or {}
        return cls(
            url=endpoint.url,
            description=endpoint.description or "",
            events=list(endpoint.events),
            headers="\n".join(f"{k}: {v}" for k, v in (endpoint.headers or {}).items()),
            scheme=sig.get("scheme", "standard"),
            sig_header=sig.get("header") or "X-Webhook-Signature",
            sig_prefix=sig.get("prefix", ""),
        )

    @classmethod
    def from_post(cls, form: MultiDict[str, str]) -> WebhookForm:
        return cls(
            url=form.get("url", "").strip(),
            description=form.get("description", "").strip(),
            events=form.getlist("events"),
            headers=form.get("headers", ""),
            scheme=form.get("scheme", "standard"),
            sig_header=form.get("signature_header", "").strip(),
            sig_prefix=form.get("signature_prefix", ""),
            secret=form.get("secret", "").strip(),
        )

    def body(self, creating: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """The API-shaped body, and the problems found before the domain sees it."""
        problems: dict[str, str] = {}
        headers, header_problem = parse_headers(self.headers)
        if header_problem:
            problems["headers"] = header_problem
        events = ["*"] if "*" in self.events else self.events
        body: dict[str, Any] = {
            "url": self.url,
            "description": self.description,
            "events": events,
            "headers": headers,
        }
        if self.scheme == "hmac-sha256-hex":
            body["signature"] = {
                "scheme": self.scheme,
                "header": self.sig_header,
                "prefix": self.sig_prefix,
            }
        else:
            body["signature"] = {"scheme": "standard"}
        if creating:
            body["status"] = "pending"  # a dashboard webhook waits for Activate
            if self.secret:
                body["secret"] = self.secret
        return body, problems


def parse_headers(text: str) -> tuple[dict[str, str], str | None]:
    """``Name: value`` lines into a dict; blank lines are skipped."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return {}, f"Line {number}: write each header as Name: value."
        headers[name.strip()] = value.strip()
    return headers, None


def field_errors(fields: dict[str, str]) -> dict[str, str]:
    """Domain field names (``signature.header``, ``events.0``) mapped onto the form's fields."""
    out: dict[str, str] = {}
    for name, message in fields.items():
        key = {
            "signature.header": "signature_header",
            "signature.prefix": "signature_prefix",
            "signature.scheme": "scheme",
            "signature": "scheme",
        }.get(name, name.split(".")[0])
        out.setdefault(key, sentence(message))
    return out


def sentence(message: str) -> str:
    for start, plainer in PLAINER.items():
        if message.startswith(start):
            return plainer
    message = message.removeprefix("is ").removeprefix("must ")
    if message.startswith("be ") or message.startswith("not "):
        message = "Must " + message
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


@dataclass(frozen=True)
class TypeGroup:
    prefix: str
    types: list[EventType]


def group_types(types: Sequence[EventType]) -> list[TypeGroup]:
    """Event types grouped by the part before the first dot (user.*, team.*, ...)."""
    ordered = sorted(types, key=lambda t: t.name)
    return [
        TypeGroup(prefix, list(items))
        for prefix, items in groupby(ordered, key=lambda t: t.name.split(".")[0])
    ]
