"""The webhook domain: every change to an endpoint goes through here (API and dashboard)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update

from app.crypto import new_signing_secret
from app.endpoints.schemas import WebhookCreate, WebhookUpdate
from app.errors import Invalid, NotFound, parse
from app.extensions import db
from app.models import Delivery, Endpoint, EventType, utcnow
from app.pagination import Page, paginate
from app.retention import retained_counts
from app.runtime import runtime
from app.signing import is_standard_secret
from app.transport import is_forbidden, literal_address

ROTATION_GRACE = timedelta(hours=24)


def get_endpoint(endpoint_id: str, include_deleted: bool = False) -> Endpoint:
    """The endpoint with this id, or NotFound (deleted ones only when asked for)."""
    endpoint = db.session.get(Endpoint, endpoint_id)
    if endpoint is None or (endpoint.deleted_at is not None and not include_deleted):
        raise NotFound(f"no webhook {endpoint_id}")
    return endpoint


def list_endpoints(limit: int, cursor: str | None) -> Page[Endpoint]:
    stmt = select(Endpoint).where(Endpoint.deleted_at.is_(None))
    return paginate(stmt, Endpoint.id, limit, cursor)


def parse_create(body: Any) -> WebhookCreate:
    spec = parse(WebhookCreate, body)
    try:
        spec.check_secret()
    except ValueError as exc:
        raise Invalid.field("secret", str(exc)) from None
    return spec


def parse_update(body: Any) -> WebhookUpdate:
    return parse(WebhookUpdate, body)


def _check_event_types(names: list[str]) -> list[str]:
    wanted = sorted({n for n in names if n != "*"})
    if wanted:
        known = set(
            db.session.execute(
                select(EventType.name).where(
                    EventType.name.in_(wanted), EventType.archived_at.is_(None)
                )
            ).scalars()
        )
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise Invalid.field("events", f"unknown event type {unknown[0]!r}")
    return ["*"] if "*" in names else wanted


def _check_collision(headers: dict[str, str], signature: dict[str, str]) -> None:
    """A custom header must not forge or shadow the compatibility signature header."""
    if signature.get("scheme") != "hmac-sha256-hex":
        return
    name = (signature.get("header") or "").lower()
    if any(h.lower() == name for h in headers):
        raise Invalid.field("headers", f"{name!r} is the signature header of this webhook")


def _check_destination(url: str) -> None:
    """Refuse at once a URL whose host is a private address literal (names are checked at send)."""
    address = literal_address(urlsplit(url).hostname or "")
    if address is not None and is_forbidden(address, runtime().settings.allow_networks):
        raise Invalid.field(
            "url", f"refused: private address {address} (see HERALD_ALLOW_NETWORKS)"
        )


def create_endpoint(spec: WebhookCreate) -> tuple[Endpoint, str]:
    """Create a webhook; returns it with its plain signing secret."""
    _check_destination(spec.url)
    secret = spec.secret or new_signing_secret()
    signature = spec.signature.model_dump() if spec.signature else {"scheme": "standard"}
    _check_collision(spec.headers or {}, signature)
    endpoint = Endpoint(
        url=spec.url,
        description=spec.description or "",
        events=_check_event_types(spec.events),
        status=spec.status,
        headers=spec.headers or {},
        rate_limit=spec.rate_limit,
        signature=signature,
        secret_enc=runtime().box.encrypt(secret),
    )
    db.session.add(endpoint)
    db.session.commit()
    return endpoint, secret


def update_endpoint(endpoint: Endpoint, spec: WebhookUpdate) -> Endpoint:
    """Apply the fields given; re-enabling lets its waiting deliveries go."""
    changes = spec.model_dump(exclude_unset=True)
    for name in ("url", "description", "headers", "rate_limit"):
        if name in changes:
            value = changes[name]
            if name in ("description",) and value is None:
                value = ""
            if name == "headers" and value is None:
                value = {}
            if name == "url" and value is None:
                raise Invalid.field("url", "must not be null")
            if name == "url":
                _check_destination(value)
            setattr(endpoint, name, value)
    if changes.get("events") is not None:
        endpoint.events = _check_event_types(changes["events"])
    elif "events" in changes:
        raise Invalid.field("events", "must not be null")
    if "signature" in changes:
        sig = spec.signature
        endpoint.signature = sig.model_dump() if sig else {"scheme": "standard"}
    _check_collision(endpoint.headers or {}, endpoint.signature or {})
    woke = False
    if changes.get("status") is not None:
        woke = set_status(endpoint, changes["status"], commit=False)
    endpoint.updated_at = utcnow()
    db.session.commit()
    if woke:
        runtime().broker.request_drain()
    return endpoint


def set_status(
    endpoint: Endpoint, status: str, reason: str | None = None, commit: bool = True
) -> bool:
    """Change the status; returns True when deliveries may now flow again."""
    was = endpoint.status
    endpoint.status = status
    endpoint.disabled_reason = reason if status == "disabled" else None
    endpoint.updated_at = utcnow()
    if commit:
        db.session.commit()
        if status == "active" and was != "active":
            runtime().broker.request_drain()
    return status == "active" and was != "active"


def delete_endpoint(endpoint: Endpoint) -> None:
    """Soft delete: pending deliveries are cancelled, the attempt log stays readable."""
    now = utcnow()
    endpoint.deleted_at = now
    endpoint.status = "disabled"
    endpoint.disabled_reason = "deleted"
    db.session.execute(
        update(Delivery)
        .where(Delivery.endpoint_id == endpoint.id, Delivery.status == "pending")
        .values(status="cancelled", cancel_reason="endpoint_deleted")
    )
    db.session.commit()


def current_secret(endpoint: Endpoint) -> str:
    return runtime().box.decrypt(endpoint.secret_enc)


def rotate_secret(endpoint: Endpoint, secret: str | None = None) -> str:
    """A new secret; the old one keeps signing beside it for 24 hours."""
    box = runtime().box
    scheme = (endpoint.signature or {}).get("scheme", "standard")
    if secret is None:
        secret = new_signing_secret()
    elif scheme == "standard" and not is_standard_secret(secret):
        raise Invalid.field("secret", "must be whsec_ followed by base64 of 24 to 64 bytes")
    endpoint.previous_secret_enc = endpoint.secret_enc
    endpoint.previous_secret_until = utcnow() + ROTATION_GRACE
    endpoint.secret_enc = box.encrypt(secret)
    endpoint.updated_at = utcnow()
    db.session.commit()
    return secret


def delivery_counters(endpoint_id: str) -> dict[str, int]:
    rows = db.session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.endpoint_id == endpoint_id)
        .group_by(Delivery.status)
    ).all()
    counts = dict(rows)
    # Finished deliveries deleted by retention still count (see app/retention.py).
    retained = retained_counts(endpoint_id)
    return {
        "succeeded": counts.get("succeeded", 0) + retained.get("succeeded", 0),
        "failed": counts.get("failed", 0) + retained.get("failed", 0),
        "pending": counts.get("pending", 0),
    }


def recover(endpoint: Endpoint, since: datetime) -> int:
    """Queue again every delivery to this endpoint that failed since ``since``."""
    result = db.session.execute(
        update(Delivery)
        .where(
            Delivery.endpoint_id == endpoint.id,
            Delivery.status == "failed",
            Delivery.last_attempt_at >= since,
        )
        .values(status="pending", next_attempt_at=utcnow(), trigger="manual")
    )
    db.session.commit()
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        runtime().broker.request_drain()
    return count
