"""Dashboard pages: the webhooks list, creating one, the webhook page and its actions."""

from __future__ import annotations

from flask import (
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from app.dashboard import attempts, bp
from app.dashboard.chart import health_chart
from app.dashboard.getters import get_endpoint_or_404
from app.dashboard.rendering import wants_partial
from app.dashboard.webhook_form import WebhookForm, field_errors, group_types, sentence
from app.deliveries import stats
from app.endpoints import service
from app.endpoints.testing import TestResult, activate, send_test
from app.errors import Invalid
from app.events import catalogue
from app.extensions import db
from app.models import Endpoint, utcnow
from app.pagination import parse_cursor

PAGE_SIZE = 50


@bp.get("/webhooks")
def webhooks() -> str:
    try:
        cursor = parse_cursor(request.args.get("cursor"))
    except Invalid:
        cursor = None  # a mangled link starts again from the newest
    page = service.list_endpoints(PAGE_SIZE, cursor)
    ids = [e.id for e in page.items]
    return render_template(
        "webhooks/list.html",
        page=page,
        cursor=cursor,
        tallies=stats.day_tallies(ids, utcnow()),
        last=stats.last_attempts(ids),
    )


@bp.get("/webhooks/new")
def webhook_new() -> str:
    return _new_page(WebhookForm(), {})


@bp.post("/webhooks")
def webhook_create() -> BaseResponse | tuple[str, int]:
    form = WebhookForm.from_post(request.form)
    body, errors = form.body(creating=True)
    if not errors:
        try:
            endpoint, _ = service.create_endpoint(service.parse_create(body))
        except Invalid as exc:
            errors = field_errors(exc.fields) or {"url": sentence(exc.message)}
        else:
            flash("Webhook created. Press Activate to send it a test event.", "success")
            return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id))
    return _new_page(form, errors), 422


@bp.get("/webhooks/<endpoint_id>")
def webhook_detail(endpoint_id: str) -> str | BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    if wants_partial():  # the log's filters and pager ask for the log alone
        return render_template(
            "webhooks/_log.html", endpoint=endpoint, **attempts.log_context(endpoint)
        )
    response = make_response(_detail_page(endpoint, WebhookForm.from_endpoint(endpoint), {}))
    response.headers["Cache-Control"] = "no-store"  # the page carries the signing secret
    return response


@bp.post("/webhooks/<endpoint_id>")
def webhook_update(endpoint_id: str) -> BaseResponse | tuple[str, int]:
    endpoint = get_endpoint_or_404(endpoint_id)
    form = WebhookForm.from_post(request.form)
    body, errors = form.body(creating=False)
    if not errors:
        try:
            service.update_endpoint(endpoint, service.parse_update(body))
        except Invalid as exc:
            errors = field_errors(exc.fields) or {"url": sentence(exc.message)}
        else:
            flash("Saved.", "success")
            return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id))
    db.session.rollback()
    # The edit card sits low on the page: say at the top that nothing was saved.
    flash("Not saved: fix the fields marked in Edit webhook below.", "error")
    return _detail_page(get_endpoint_or_404(endpoint_id), form, errors), 422


@bp.post("/webhooks/<endpoint_id>/status")
def webhook_status(endpoint_id: str) -> BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    wanted = request.form.get("status")
    if wanted == "active":
        service.set_status(endpoint, "active")
        flash("Enabled. Deliveries that were waiting go out now.", "success")
    elif wanted == "disabled":
        service.set_status(endpoint, "disabled", reason="Disabled from the dashboard")
        flash("Disabled. New deliveries wait until you enable it again.", "success")
    else:
        abort(400)
    return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id))


@bp.post("/webhooks/<endpoint_id>/delete")
def webhook_delete(endpoint_id: str) -> BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    service.delete_endpoint(endpoint)
    flash(
        f"Deleted the webhook to {endpoint.url}. Its pending deliveries were cancelled.", "success"
    )
    return redirect(url_for("dashboard.webhooks"))


@bp.post("/webhooks/<endpoint_id>/secret/rotate")
def webhook_rotate(endpoint_id: str) -> BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    given = request.form.get("secret", "").strip() or None
    try:
        service.rotate_secret(endpoint, given)
    except Invalid as exc:
        flash(f"Not rotated: {sentence(exc.fields.get('secret', exc.message))}", "error")
    else:
        flash("New signing secret in place. The old one keeps working for 24 hours.", "success")
    return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id) + "#signing")


@bp.post("/webhooks/<endpoint_id>/activate")
def webhook_activate(endpoint_id: str) -> str | BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    return _test_answer(endpoint, activate(endpoint), activating=True)


@bp.post("/webhooks/<endpoint_id>/test")
def webhook_test(endpoint_id: str) -> str | BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    event_type = request.form.get("event_type") or "herald.test"
    known = {t.name for t in catalogue.list_event_types()} | {"herald.test"}
    if event_type not in known:
        abort(400)
    return _test_answer(endpoint, send_test(endpoint, event_type), activating=False)


def _test_answer(endpoint: Endpoint, result: TestResult, activating: bool) -> str | BaseResponse:
    db.session.refresh(endpoint)
    if wants_partial():
        return render_template(
            "webhooks/_test_result.html", endpoint=endpoint, result=result, activating=activating
        )
    if result.status == "success":
        what = "Activated: the test event was accepted" if activating else "Test event accepted"
        flash(f"{what} (HTTP {result.http_status}, {result.duration_ms} ms).", "success")
    else:
        answer = f"HTTP {result.http_status}" if result.http_status else "no response"
        flash(f"The test event failed ({answer}): {result.response}", "error")
    return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id))


def _detail_page(endpoint: Endpoint, form: WebhookForm, errors: dict[str, str]) -> str:
    now = utcnow()
    buckets = stats.hourly_health(endpoint.id, now)
    day = stats.Tally(sum(b.tally.success for b in buckets), sum(b.tally.failure for b in buckets))
    types = catalogue.list_event_types()
    grace = endpoint.previous_secret_until if endpoint.previous_secret_enc else None
    return render_template(
        "webhooks/detail.html",
        endpoint=endpoint,
        secret=service.current_secret(endpoint),
        grace_until=grace if grace and grace > now else None,
        held_until=endpoint.held_until if (endpoint.held_until or now) > now else None,
        chart=health_chart(buckets),
        day=day,
        open_deliveries=stats.open_deliveries(endpoint.id),
        groups=group_types(types),
        event_types=types,
        form=form,
        errors=errors,
        recover_windows=attempts.RECOVER_WINDOWS,
        **attempts.log_context(endpoint),
    )


def _new_page(form: WebhookForm, errors: dict[str, str]) -> str:
    return render_template(
        "webhooks/new.html",
        form=form,
        errors=errors,
        groups=group_types(catalogue.list_event_types()),
    )
