"""Dashboard pages: the event-type catalogue; add, archive and restore types."""

from __future__ import annotations

import json
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.dashboard import bp
from app.dashboard.rendering import wants_partial
from app.errors import Conflict, Invalid, NotFound
from app.events import catalogue
from app.events.schemas import EventTypeIn
from app.models import EventType

# pydantic's wording speaks to programmers (it quotes the regex); the form speaks to admins.
PLAINER = {
    "String should match pattern": "Use letters, digits, - and _ in dot-separated parts.",
    "String should have at least 1 character": "Required.",
    "Input should be a valid dictionary": 'Must be a JSON object, such as {"type": "object"}.',
}


def get_event_type_or_404(name: str) -> EventType:
    """The event type with this name, or a 404 page."""
    try:
        return catalogue.get_event_type(name)
    except NotFound:
        abort(404)


@bp.get("/event-types")
def event_types() -> str:
    return _page(form={}, errors={})


@bp.post("/event-types")
def event_type_create() -> tuple[str, int] | Response:
    form = {k: request.form.get(k, "") for k in ("name", "description", "schema")}
    body, errors = _body_from(form)
    try:
        spec = catalogue.parse_event_type(body)
    except Invalid as exc:
        errors = {**{k: _sentence(v) for k, v in exc.fields.items()}, **errors}
    if errors:
        return _page(form=form, errors=errors), 422
    try:
        event_type = catalogue.create_event_type(spec)
    except Conflict:
        return _page(
            form=form, errors={"name": "An event type with this name already exists."}
        ), 409
    flash(f"Added the event type {event_type.name}.", "success")
    return redirect(url_for("dashboard.event_types"))


@bp.post("/event-types/<name>/archive")
def event_type_archive(name: str) -> str | Response:
    event_type = get_event_type_or_404(name)
    catalogue.archive_event_type(event_type)
    return _after_change(f"Archived {name}: it takes no new events or subscriptions.")


@bp.post("/event-types/<name>/restore")
def event_type_restore(name: str) -> str | Response:
    archived = get_event_type_or_404(name)
    if archived.archived_at is not None:
        # Re-adding an archived type is how the catalogue brings it back, as it was.
        spec = EventTypeIn.model_validate(
            {"name": archived.name, "description": archived.description, "schema": archived.schema}
        )
        catalogue.create_event_type(spec)
    return _after_change(f"Restored {name}.")


def _body_from(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API-shaped body of the form, and the error of a schema that is not JSON at all."""
    body: dict[str, Any] = {"name": form["name"].strip(), "description": form["description"]}
    raw = form["schema"].strip()
    if not raw:
        return body, {}
    try:
        body["schema"] = json.loads(raw)
    except json.JSONDecodeError as exc:
        return body, {
            "schema": f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        }
    return body, {}


def _sentence(message: str) -> str:
    """A domain message ("is not a valid JSON Schema: ...") as a sentence beside its field."""
    for start, plainer in PLAINER.items():
        if message.startswith(start):
            return plainer
    message = message.removeprefix("is ")
    return message[:1].upper() + message[1:]


def _after_change(message: str) -> str | Response:
    if wants_partial():
        return render_template("event_types/_catalogue.html", notice=message, **_catalogue())
    flash(message, "success")
    return redirect(url_for("dashboard.event_types"))


def _catalogue() -> dict[str, list[EventType]]:
    everything = catalogue.list_event_types(include_archived=True)
    return {
        "live": [t for t in everything if t.archived_at is None],
        "archived": [t for t in everything if t.archived_at is not None],
    }


def _page(form: dict[str, str], errors: dict[str, str]) -> str:
    return render_template(
        "event_types/index.html", form=form, errors=errors, notice=None, **_catalogue()
    )
