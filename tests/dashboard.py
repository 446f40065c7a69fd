"""Helpers for the dashboard tests: CSRF tokens from pages, and a signed-in admin client."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

TOKEN = re.compile(r'name="csrf-token" content="([^"]+)"')
OWNER_EMAIL = "owner@example.com"
OWNER_PASSWORD = "correct horse battery"


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a page carries in its meta tag (tied to this client's session)."""
    page = client.get(path)
    match = TOKEN.search(page.get_data(as_text=True))
    assert match, f"no csrf-token meta on {path} ({page.status_code})"
    return match.group(1)


class Admin:
    """A signed-in admin's browser: GETs, and POSTs that carry the CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.token = csrf_token(client, "/webhooks")

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, **kw)

    def post(self, path: str, data: Any = None, **kw: Any) -> Any:
        form = dict(data or {})
        form.setdefault("csrf_token", self.token)
        return self.client.post(path, data=form, **kw)

    def htmx_post(self, path: str, data: Any = None, **kw: Any) -> Any:
        """As htmx sends it: the token in the X-CSRFToken header, not the form."""
        headers = {"HX-Request": "true", "X-CSRFToken": self.token, **kw.pop("headers", {})}
        return self.client.post(path, data=data or {}, headers=headers, **kw)
