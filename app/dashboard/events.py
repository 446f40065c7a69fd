"""Dashboard pages: recent events, one event with its deliveries, resending them."""

from __future__ import annotations

from flask import Response, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.dashboard import bp
from app.dashboard.rendering import render_page, wants_partial
from app.errors import Invalid, NotFound
from app.events import catalogue, overview, service
from app.models import Event, utcnow
from app.pagination import Page, parse_cursor

PAGE_SIZE = 50


def get_event_or_404(event_id: str) -> Event:
    """The event with this id, or a 404 page."""
    try:
        return service.get_event(event_id)
    except NotFound:
        abort(404)


@bp.get("/events")
def events() -> str | BaseResponse:
    query = request.args.get("q", "").strip()
    type_name = request.args.get("type", "").strip()
    if query:
        found = overview.find_event(query)
        if found is not None:
            target = url_for("dashboard.event_detail", event_id=found.id)
            if wants_partial():  # the search box asked for rows: send the browser on instead
                return Response(status=204, headers={"HX-Location": target})
            return redirect(target)
    try:
        cursor = parse_cursor(request.args.get("cursor"))
    except Invalid:
        cursor = None  # a mangled link starts again from the newest
    # A search that found nothing lists nothing rather than every event.
    page: Page[Event] = (
        Page([], None) if query else service.list_events(PAGE_SIZE, cursor, type_name or None)
    )
    return render_page(
        "events/list.html",
        "events/_results.html",
        page=page,
        counts=overview.delivery_counts([e.id for e in page.items]),
        event_types=catalogue.list_event_types(include_archived=True),
        type_name=type_name,
        query=query,
        cursor=cursor,
    )


@bp.get("/events/<event_id>")
def event_detail(event_id: str) -> str:
    event = get_event_or_404(event_id)
    return render_template(
        "events/detail.html",
        event=event,
        body=event.body(),
        producer_id=overview.producer_id(event),
        rows=overview.deliveries_of(event, utcnow()),
    )


@bp.get("/events/<event_id>/deliveries")
def event_deliveries(event_id: str) -> str | BaseResponse:
    """The deliveries card alone: it polls this while any delivery is still under way."""
    event = get_event_or_404(event_id)
    if not wants_partial():
        return redirect(url_for("dashboard.event_detail", event_id=event.id))
    return _deliveries_card(event)


@bp.post("/events/<event_id>/redeliver")
def event_redeliver(event_id: str) -> str | BaseResponse:
    event = get_event_or_404(event_id)
    queued = service.redeliver(event)
    notice = f"Queued {queued} {'delivery' if queued == 1 else 'deliveries'} again."
    return _after_resend(event, notice if queued else "Nothing to redeliver right now.")


@bp.post("/events/<event_id>/deliveries/<delivery_id>/resend")
def delivery_resend(event_id: str, delivery_id: str) -> str | BaseResponse:
    event = get_event_or_404(event_id)
    rows = {row.delivery.id: row for row in overview.deliveries_of(event, utcnow())}
    row = rows.get(delivery_id)
    if row is None:
        abort(404)
    if not row.can_resend:
        notice = "That webhook is deleted." if row.endpoint.deleted_at else "Already sending."
    elif service.resend([delivery_id]):
        notice = f"Resending to {row.endpoint.url}."
    else:
        notice = "It is being sent right now; try again in a moment."
    return _after_resend(event, notice)


def _after_resend(event: Event, notice: str) -> str | BaseResponse:
    if wants_partial():
        return _deliveries_card(event, notice)
    flash(notice, "success")
    return redirect(url_for("dashboard.event_detail", event_id=event.id))


def _deliveries_card(event: Event, notice: str | None = None) -> str:
    return render_template(
        "events/_deliveries.html",
        event=event,
        rows=overview.deliveries_of(event, utcnow()),
        notice=notice,
    )
