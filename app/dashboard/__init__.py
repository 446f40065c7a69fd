"""The admin dashboard: server-rendered pages and htmx partials, signed-in admins only."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

bp = Blueprint("dashboard", __name__)


@cache
def _manifest(static_folder: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (Path(static_folder) / "vendor" / "manifest.json").read_text()
    )
    return data


@bp.app_context_processor
def vendor_assets() -> dict[str, Any]:
    """Script sources with their SRI hashes: vendored by default, the CDN when configured."""
    cdn = current_app.extensions["herald"].settings.assets_cdn
    manifest = _manifest(str(current_app.static_folder))
    vendor = {
        name: {
            "src": entry["cdn"] if cdn else url_for("static", filename=entry["file"]),
            "integrity": entry["integrity"],
        }
        for name, entry in manifest.items()
    }
    return {"vendor": vendor}


@bp.app_errorhandler(CSRFError)
def csrf_failed(exc: CSRFError) -> tuple[str, int]:
    """A form without a valid CSRF token is refused (400), never silently accepted."""
    return render_template("errors/csrf.html", reason=exc.description), 400


@bp.app_errorhandler(404)
def not_found(exc: HTTPException) -> Any:
    """A page in the dashboard's look; /v1 keeps its JSON error."""
    if request.path.startswith("/v1"):
        from app.api.errors import error_response

        return error_response(404, "not found")
    return render_template("errors/404.html"), 404


@bp.before_request
def require_login() -> Any:
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    return None


from app.dashboard import api_keys, attempts, event_types, events, webhooks  # noqa: E402,F401
