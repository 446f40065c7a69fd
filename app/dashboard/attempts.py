"""Dashboard pages: a webhook's attempt log (filters and pages), one attempt, resending,
recovering failed deliveries, and the live stream of new attempts."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from app.dashboard import bp
from app.dashboard.getters import get_endpoint_or_404
from app.dashboard.live import attempt_stream
from app.deliveries import stats
from app.deliveries.log import get_attempt, list_attempts
from app.endpoints import service
from app.errors import Invalid, NotFound
from app.events import service as events
from app.ids import id_floor
from app.models import Attempt, Endpoint, utcnow
from app.pagination import CURSOR, Page, parse_cursor

LOG_PAGE_SIZE = 25
STREAM_OVERLAP = timedelta(seconds=10)
RECOVER_WINDOWS = {"1": "the last hour", "6": "the last 6 hours", "24": "the last 24 hours",
                   "72": "the last 3 days", "168": "the last 7 days"}  # fmt: skip


def log_context(endpoint: Endpoint) -> dict[str, Any]:
    """The log's page for the filters and cursor in the query string."""
    status = request.args.get("status") or None
    event_type = request.args.get("event_type") or None
    if status not in (None, "success", "failure"):
        status = None
    try:
        cursor = parse_cursor(request.args.get("cursor"))
    except Invalid:
        cursor = None
    page: Page[Attempt] = list_attempts(endpoint.id, LOG_PAGE_SIZE, cursor, status, event_type)
    # The live stream replays from a little before this read, so nothing falls in between.
    after = id_floor("att", (utcnow() - STREAM_OVERLAP).timestamp())
    return {
        "log": page,
        "status": status,
        "event_type": event_type,
        "cursor": cursor,
        "stream_after": after,
    }


@bp.post("/webhooks/<endpoint_id>/recover")
def webhook_recover(endpoint_id: str) -> BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    hours = request.form.get("hours", "")
    if hours not in RECOVER_WINDOWS:
        abort(400)
    count = service.recover(endpoint, utcnow() - timedelta(hours=int(hours)))
    if count:
        noun = "delivery" if count == 1 else "deliveries"
        flash(f"Queued {count} failed {noun} from {RECOVER_WINDOWS[hours]} again.", "success")
    else:
        flash(f"No failed deliveries in {RECOVER_WINDOWS[hours]}.", "info")
    return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id))


@bp.get("/webhooks/<endpoint_id>/attempts/<attempt_id>")
def attempt_detail(endpoint_id: str, attempt_id: str) -> str:
    endpoint = get_endpoint_or_404(endpoint_id, include_deleted=True)
    try:
        attempt = get_attempt(attempt_id)
    except NotFound:
        abort(404)
    if attempt.endpoint_id != endpoint.id:
        abort(404)
    event = events.get_event(attempt.event_id)
    delivery = stats.get_delivery(attempt.delivery_id)
    return render_template(
        "webhooks/attempt.html",
        endpoint=endpoint,
        attempt=attempt,
        event=event,
        body=event.body(),
        delivery=delivery,
        response_json=_as_json(attempt.response_body),
    )


@bp.post("/webhooks/<endpoint_id>/deliveries/<delivery_id>/resend")
def webhook_delivery_resend(endpoint_id: str, delivery_id: str) -> BaseResponse:
    endpoint = get_endpoint_or_404(endpoint_id)
    delivery = stats.get_delivery(delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        abort(404)
    if events.resend([delivery.id]):
        flash("Resending now; the new attempt appears at the top of the log.", "success")
    else:
        flash("It is being sent right now; try again in a moment.", "info")
    return redirect(url_for("dashboard.webhook_detail", endpoint_id=endpoint.id))


@bp.get("/webhooks/<endpoint_id>/stream")
def webhook_stream(endpoint_id: str) -> Response:
    endpoint = get_endpoint_or_404(endpoint_id)
    status = request.args.get("status") or None
    event_type = request.args.get("event_type") or None

    def render(attempt: Attempt) -> str | None:
        if (status and attempt.status != status) or (
            event_type and attempt.event_type != event_type
        ):
            return None
        return render_template(
            "webhooks/_attempt_row.html", endpoint=endpoint, attempt=attempt, fresh=True
        )

    after = request.headers.get("Last-Event-ID") or request.args.get("after")
    if after and not CURSOR.match(after):
        after = None
    heartbeat = float(current_app.config.get("HERALD_SSE_HEARTBEAT", 15.0))
    stream = stream_with_context(attempt_stream(endpoint.id, render, after, heartbeat))
    response = Response(stream, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _as_json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
