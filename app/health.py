"""Liveness for load balancers (/healthz) and Prometheus metrics (/metrics)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from app.extensions import db
from app.heartbeat import STALE_AFTER, workers_alive
from app.metrics import render
from app.runtime import runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 while the database and Redis answer; the body also says whether workers beat.

    Missing workers do not make it 503: a load balancer would then take the web app out of
    rotation, which fixes nothing. They make the status "degraded" and the field say so.
    """
    checks = {"database": "ok", "redis": "ok", "workers": "ok"}
    try:
        db.session.execute(text("SELECT 1"))
        db.session.rollback()
    except Exception:
        db.session.rollback()
        checks["database"] = "down"
    broker = runtime().broker
    if not broker.ping():
        checks["redis"] = "down"
        checks["workers"] = "unknown"
    else:
        try:
            if workers_alive(broker) == 0:
                checks["workers"] = f"none seen in the last {STALE_AFTER:g} s"
        except (redis.RedisError, OSError):
            checks["workers"] = "unknown"
    serving = checks["database"] == "ok" and checks["redis"] == "ok"
    status = "ok" if all(v == "ok" for v in checks.values()) else "degraded"
    return jsonify({"status": status, **checks}), 200 if serving else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text; nginx keeps it to internal addresses (see deploy/nginx)."""
    body = render(runtime().broker)
    return Response(body, mimetype="text/plain; version=0.0.4; charset=utf-8")
