"""Bearer API keys for every /v1 route (except the OpenAPI document)."""

from __future__ import annotations

from datetime import timedelta

from flask import Response, g, request
from sqlalchemy import select, update

from app.api import bp
from app.api.errors import error_response
from app.crypto import hash_api_key
from app.extensions import db
from app.models import ApiKey, utcnow

PUBLIC = {"api.openapi"}


@bp.before_request
def require_api_key() -> tuple[Response, int] | None:
    if request.endpoint in PUBLIC:
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return error_response(401, "missing or invalid API key")
    key = db.session.execute(
        select(ApiKey.id, ApiKey.last_used_at).where(
            ApiKey.key_hash == hash_api_key(token.strip()), ApiKey.revoked_at.is_(None)
        )
    ).one_or_none()
    if key is None:
        return error_response(401, "missing or invalid API key")
    now = utcnow()
    # Record use at most once a minute: a write per request would cost throughput.
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        db.session.commit()
    g.api_key_id = key.id
    return None
