"""Every /v1 error is JSON: {"error": {"code", "message", "fields"}} with its status."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from app.api import bp
from app.errors import HeraldError

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int, message: str, fields: dict[str, str] | None = None, code: str | None = None
) -> tuple[Response, int]:
    body: dict[str, Any] = {"code": code or CODES.get(status, "error"), "message": message}
    if fields:
        body["fields"] = fields
    return jsonify({"error": body}), status


@bp.errorhandler(HeraldError)
def _domain_error(exc: HeraldError) -> tuple[Response, int]:
    return error_response(exc.status, exc.message, exc.fields, exc.code)


def register_json_errors(app: Flask) -> None:
    """HTTP errors under /v1 (404 for unknown routes, 405, 413 ...) answer JSON too."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        if not request.path.startswith("/v1"):
            return exc
        status = exc.code or 500
        message = {
            404: "not found",
            405: "method not allowed",
            413: "request body too large",
        }.get(status, exc.description or exc.name)
        response, status = error_response(status, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        if request.path.startswith("/v1"):
            return error_response(500, "internal error")
        return Response("Internal server error", 500, mimetype="text/plain")
