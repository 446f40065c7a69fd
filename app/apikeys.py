"""API keys: made here, shown once, stored hashed, listed by name, revoked for good."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy import select, update

from app.crypto import hash_api_key, new_api_key
from app.errors import NotFound, parse
from app.extensions import db
from app.models import ApiKey, utcnow


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def parse_api_key(body: Any) -> ApiKeyIn:
    return parse(ApiKeyIn, body)


def create_api_key(name: str) -> tuple[ApiKey, str]:
    """A new API key row and the plain key, which is shown once and stored only hashed."""
    plain = new_api_key()
    key = ApiKey(name=name, key_hash=hash_api_key(plain), hint=plain[:7])
    db.session.add(key)
    db.session.commit()
    return key, plain


def list_api_keys() -> list[ApiKey]:
    """Every key, live and revoked, by name (the page shows the two apart)."""
    return list(db.session.execute(select(ApiKey).order_by(ApiKey.name, ApiKey.id)).scalars())


def get_api_key(key_id: str) -> ApiKey:
    """The API key with this id, or NotFound."""
    key = db.session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key {key_id}")
    return key


def revoke_api_key(key: ApiKey) -> bool:
    """Revoke the key from its next request on; False when it was already revoked."""
    # Conditional, so a second revoke (double click, two admins) keeps the first time.
    result = db.session.execute(
        update(ApiKey)
        .where(ApiKey.id == key.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.session.commit()
    db.session.refresh(key)
    return bool(result.rowcount)  # type: ignore[attr-defined]
