"""X-Forwarded-* is believed only with HERALD_PROXY_FIX; static URLs carry a content hash."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from flask import Flask, request, url_for

from tests.conftest import make_app

FORWARDED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "herald.example.com",
}


def whoami(app: Flask) -> dict[str, str]:
    @app.get("/_test/whoami")
    def _whoami() -> dict[str, str]:
        return {"remote": str(request.remote_addr), "url": request.url}

    r = app.test_client().get("/_test/whoami", headers=FORWARDED)
    return r.get_json()  # type: ignore[no-any-return]


def test_it_ignores_forwarded_headers_by_default(env: dict[str, str]) -> None:
    seen = whoami(make_app(env))
    assert seen["remote"] == "127.0.0.1"
    assert seen["url"].startswith("http://localhost/")


def test_it_trusts_one_proxy_when_told(env: dict[str, str]) -> None:
    seen = whoami(make_app(env, HERALD_PROXY_FIX="1"))
    assert seen["remote"] == "203.0.113.7"
    assert seen["url"] == "https://herald.example.com/_test/whoami"


@pytest.mark.parametrize("bad", ["yes", "-1", "9"])
def test_it_refuses_a_bad_proxy_count(env: dict[str, str], bad: str) -> None:
    from app.config import ConfigError

    with pytest.raises(ConfigError, match="HERALD_PROXY_FIX"):
        make_app(env, HERALD_PROXY_FIX=bad)


def test_it_versions_static_urls_by_content(app: Flask) -> None:
    css = Path(str(app.static_folder)) / "css" / "herald.css"
    digest = hashlib.sha256(css.read_bytes()).hexdigest()[:12]
    with app.test_request_context():
        assert url_for("static", filename="css/herald.css") == f"/static/css/herald.css?v={digest}"
        assert url_for("static", filename="no/such.file") == "/static/no/such.file"
        vendored = "vendor/htmx-2.0.11.min.js"
        assert url_for("static", filename=vendored) == f"/static/{vendored}"
