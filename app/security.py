"""Guards on every request and response: security headers, and rate limits kept in Redis.

The API is limited per API key and the sign-in form per client address, with Flask-Limiter
storing its counters in Herald's Redis (so every web process shares them).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlsplit

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app.config import Settings

# The dashboard's one sign-in form; its endpoint name is enough, so app/auth stays unaware.
SIGN_IN_ENDPOINT = "auth.login"


def content_security_policy(cdn_origins: list[str]) -> str:
    """A CSP that allows no inline script or style: everything comes from Herald (or the CDN)."""
    scripts = " ".join(["'self'", *cdn_origins])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def cdn_origins(static_folder: str | None) -> list[str]:
    """The origins of the vendored scripts' CDN copies (only used with HERALD_ASSETS_CDN)."""
    manifest = Path(static_folder or "") / "vendor" / "manifest.json"
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return []
    origins = set()
    for entry in entries.values():
        parts = urlsplit(str(entry.get("cdn", "")))
        if parts.scheme == "https" and parts.netloc:
            origins.add(f"https://{parts.netloc}")
    return sorted(origins)


def security_headers(csp: str, production: bool) -> dict[str, str]:
    """The headers every response carries."""
    headers = {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if production:
        # Production is served over HTTPS (its cookies are Secure): keep browsers on it.
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


def api_client() -> str:
    """Who an API request counts against: its key (hashed, never stored plain), else its address."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return "addr:" + get_remote_address()


def _not_a_sign_in() -> bool:
    return request.endpoint != SIGN_IN_ENDPOINT or request.method != "POST"


def _failed_sign_in(response: Response) -> bool:
    # A good sign-in redirects to the dashboard; only the others use up the allowance, so
    # a team signing in from one office address is never locked out by its own success.
    return not 300 <= response.status_code < 400


def storage_uri(settings: Settings, instance: Path) -> str:
    """Flask-Limiter's form of Herald's Redis URL (the embedded server listens on a socket)."""
    url = settings.redis_url or f"unix://{instance / 'redis.sock'}"
    if url.startswith("unix://"):
        return "redis+unix://" + url.removeprefix("unix://")
    return url


def init_security(app: Flask, settings: Settings) -> Limiter:
    """Add security headers to every response and the rate limits to the API and sign-in."""
    headers = security_headers(
        content_security_policy(cdn_origins(app.static_folder) if settings.assets_cdn else []),
        production=settings.env == "production",
    )

    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    limiter = Limiter(
        key_func=get_remote_address,
        storage_uri=storage_uri(settings, Path(app.instance_path)),
        storage_options={"key_prefix": f"{settings.redis_prefix}:limits"},
        strategy="moving-window",
        headers_enabled=True,
        # Redis away must not take the API down with it: count in memory meanwhile.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
        default_limits=[settings.login_rate_limit],
        default_limits_exempt_when=_not_a_sign_in,
        default_limits_deduct_when=_failed_sign_in,
    )
    limiter.init_app(app)
    from app.api import bp as api_bp

    # One allowance per key across the whole API, not one per route.
    limiter.shared_limit(settings.api_rate_limit, scope="api", key_func=api_client)(api_bp)
    return limiter
