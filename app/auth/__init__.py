"""Sign-in, sign-out and first-run owner setup."""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for
from werkzeug.wrappers import Response

from app.auth.accounts import has_users, load_user
from app.extensions import login

bp = Blueprint("auth", __name__)

login.login_view = "auth.login"
login.login_message = "Sign in to continue."
login.login_message_category = "info"
login.session_protection = "basic"  # "strong" would drop "remember me" on every new IP
login.user_loader(load_user)


def unauthorized() -> Response:
    """A fresh install goes to setup; otherwise sign in and come back."""
    if not has_users():
        return redirect(url_for("auth.setup"))
    target = url_for("auth.login", next=request.full_path.rstrip("?"))
    if request.headers.get("HX-Request") == "true":
        # An htmx fragment request must not swap the sign-in page into a table cell.
        response = Response(status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


login.unauthorized_handler(unauthorized)

from app.auth import routes  # noqa: E402,F401
