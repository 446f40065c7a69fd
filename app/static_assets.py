"""Static URLs that carry a hash of the file, so nginx can let browsers cache them for a year."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any

from flask import Flask
from werkzeug.security import safe_join


@lru_cache(maxsize=512)
def _digest(path: str, mtime_ns: int) -> str:
    """Short content hash; the mtime in the key makes an edited file hash again."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()[:12]


def version_static_urls(app: Flask) -> None:
    """``url_for('static', filename=...)`` gains ``?v=<hash of the file>``."""

    @app.url_defaults
    def _add_version(endpoint: str, values: dict[str, Any]) -> None:
        if endpoint != "static" or "v" in values or not app.static_folder:
            return
        filename = values.get("filename")
        # Vendored files carry their version in their names already (htmx-2.0.11.min.js).
        if not filename or filename.startswith("vendor/"):
            return
        path = safe_join(app.static_folder, filename)
        if path is None:
            return
        try:
            values["v"] = _digest(path, os.stat(path).st_mtime_ns)
        except OSError:
            return  # a missing file keeps a plain URL; the 404 will say so
