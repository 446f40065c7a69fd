"""Sign-in, sign-out, the first-run owner setup, and the site root."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user
from werkzeug.wrappers import Response

from app.auth import accounts, bp, throttle
from app.errors import Conflict, Invalid


@bp.get("/")
def index() -> Response:
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.webhooks"))
    if not accounts.has_users():
        return redirect(url_for("auth.setup"))
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> str | Response:
    # Once an account exists this page is gone: it would let anyone make themselves an admin.
    if accounts.has_users():
        abort(404)
    form = {"email": request.form.get("email", "")}
    errors: dict[str, str] = {}
    if request.method == "POST":
        try:
            user = accounts.create_owner(form["email"], request.form.get("password", ""))
        except Invalid as exc:
            errors = exc.fields
        except Conflict:
            abort(404)
        else:
            login_user(user)
            flash("Welcome to Herald. Your owner account is ready.", "success")
            return redirect(url_for("dashboard.webhooks"))
    return render_template("auth/setup.html", form=form, errors=errors)


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | Response | tuple[str, int]:
    if not accounts.has_users():
        return redirect(url_for("auth.setup"))
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.webhooks"))
    form = {"email": request.form.get("email", ""), "remember": request.form.get("remember")}
    if request.method == "GET":
        return render_template("auth/login.html", form=form, error=None)
    ip = request.remote_addr or "unknown"
    if throttle.is_throttled(ip, form["email"] or ""):
        error = "Too many failed sign-ins. Wait a few minutes and try again."
        return render_template("auth/login.html", form=form, error=error), 429
    user = accounts.authenticate(form["email"] or "", request.form.get("password", ""))
    if user is None:
        throttle.record_failure(ip, form["email"] or "")
        error = "That email and password do not match an account."
        return render_template("auth/login.html", form=form, error=error), 401
    throttle.clear(ip, form["email"] or "")
    login_user(user, remember=bool(form["remember"]))
    return redirect(_safe_next(request.args.get("next")))


@bp.post("/logout")
def logout() -> Response:
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    fallback = url_for("dashboard.webhooks")
    if not target or not target.startswith("/") or target.startswith("//"):
        return fallback
    parts = urlsplit(target)
    return fallback if parts.scheme or parts.netloc or "\\" in target else target
