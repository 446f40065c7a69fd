"""Rows the webhook pages act on, or a 404 page (flaskr's ``get_post`` pattern)."""

from __future__ import annotations

from flask import abort

from app.endpoints import service
from app.errors import NotFound
from app.models import Endpoint


def get_endpoint_or_404(endpoint_id: str, include_deleted: bool = False) -> Endpoint:
    """The webhook with this id, or a 404 page (deleted ones only when asked for)."""
    try:
        return service.get_endpoint(endpoint_id, include_deleted=include_deleted)
    except NotFound:
        abort(404)
