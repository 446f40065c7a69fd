"""The /v1 JSON API: thin routes over the domain, errors in API.md's shape."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/v1")

from app.api import auth, errors, events, openapi, webhooks  # noqa: E402,F401  (routes register on bp)
