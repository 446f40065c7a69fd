"""Dashboard pages: API keys; create one (shown once), list them, revoke one."""

from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app import apikeys
from app.dashboard import bp
from app.dashboard.rendering import wants_partial
from app.errors import Invalid, NotFound
from app.models import ApiKey


def get_api_key_or_404(key_id: str) -> ApiKey:
    """The API key with this id, or a 404 page."""
    try:
        return apikeys.get_api_key(key_id)
    except NotFound:
        abort(404)


@bp.get("/api-keys")
def api_keys() -> str:
    return _page()


@bp.post("/api-keys")
def api_key_create() -> Response | tuple[str, int]:
    name = request.form.get("name", "")
    try:
        spec = apikeys.parse_api_key({"name": name})
    except Invalid as exc:
        problem = exc.fields.get("name", exc.message)
        if problem.startswith("String should have at least"):
            problem = "Give the key a name, such as the service that will use it."
        return _page(name=name, error=problem), 422
    key, plain = apikeys.create_api_key(spec.name)
    # The plain key exists only in this response: answered directly (no redirect), never cached.
    response = make_response(_page(new_key=key, plain=plain))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/api-keys/<key_id>/revoke")
def api_key_revoke(key_id: str) -> str | Response:
    key = get_api_key_or_404(key_id)
    apikeys.revoke_api_key(key)
    message = f"Revoked {key.name}: requests with it now get 401."
    if wants_partial():
        return render_template("api_keys/_keys.html", notice=message, **_keys())
    flash(message, "success")
    return redirect(url_for("dashboard.api_keys"))


def _keys() -> dict[str, list[ApiKey]]:
    everything = apikeys.list_api_keys()
    return {
        "live": [k for k in everything if k.revoked_at is None],
        "revoked": [k for k in everything if k.revoked_at is not None],
    }


def _page(
    name: str = "", error: str | None = None, new_key: ApiKey | None = None, plain: str = ""
) -> str:
    return render_template(
        "api_keys/index.html",
        name=name,
        error=error,
        new_key=new_key,
        plain=plain,
        notice=None,
        **_keys(),
    )
