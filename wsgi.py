"""The WSGI entry point: ``gunicorn wsgi:app`` and ``flask --app wsgi ...``."""

from __future__ import annotations

import gc
import sys

from app import create_app
from app.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"Herald cannot start: {exc}")

# Everything made so far (Flask, SQLAlchemy, the app) lives as long as the process. Left to
# the collector, each full collection of a web worker walked all of it: 55-64 ms pauses that
# held up every publish in flight (the worker does the same in app/cli.py).
gc.collect()
gc.freeze()
