"""Rendering helpers for the catalogue pages: page-or-partial, times and JSON in templates."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from flask import current_app, render_template, request
from markupsafe import Markup

from app.dashboard import bp
from app.events.publish import iso

JSON_TOKEN = re.compile(
    r'(?P<string>"(?:\\.|[^"\\])*")(?P<colon>\s*:)?'
    r"|(?P<literal>\btrue\b|\bfalse\b|\bnull\b)"
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
)


def wants_partial() -> bool:
    """An htmx request for a fragment (boosted navigation and history restores want pages)."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and headers.get("HX-Boosted") != "true"
        and headers.get("HX-History-Restore-Request") != "true"
    )


def render_page(page: str, partial: str, /, **context: Any) -> str:
    """The whole page, or for an htmx request only the partial the page includes."""
    return render_template(partial if wants_partial() else page, **context)


@bp.app_template_filter("reltime")
def reltime(moment: datetime | None, empty: str = "—") -> Markup:
    """A <time> that herald.js turns into "3 minutes ago"; the exact UTC time without JS."""
    if moment is None:
        return Markup('<span class="muted">{}</span>').format(empty)
    exact = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return Markup('<time class="relative" datetime="{}" title="{}">{}</time>').format(
        iso(moment), exact, exact
    )


@bp.app_template_filter("highlight_json")
def highlight_json(value: Any) -> Markup:
    """Pretty-printed JSON with its tokens wrapped in the stylesheet's .json-* classes."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    span = Markup('<span class="{}">{}</span>')
    out: list[str | Markup] = []  # plain strings are escaped by the join below
    last = 0
    for match in JSON_TOKEN.finditer(text):
        out.append(text[last : match.start()])
        if match["string"]:
            out.append(
                span.format("json-key" if match["colon"] else "json-string", match["string"])
            )
            out.append(match["colon"] or "")
        elif match["literal"]:
            out.append(
                span.format(
                    "json-null" if match["literal"] == "null" else "json-boolean", match["literal"]
                )
            )
        else:
            out.append(span.format("json-number", match["number"]))
        last = match.end()
    out.append(text[last:])
    return Markup("").join(out)


@bp.app_template_global("has_page")
def has_page(endpoint: str) -> bool:
    """Whether a view exists, so a link to a page still being written degrades to text."""
    return endpoint in current_app.view_functions
