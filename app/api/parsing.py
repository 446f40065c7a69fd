"""Reading a JSON body strictly: 415 when not JSON, 400 when malformed."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from app.errors import HeraldError


class NotJson(HeraldError):
    status = 415
    code = "unsupported_media_type"


class Malformed(HeraldError):
    status = 400
    code = "bad_request"


def json_body(optional: bool = False) -> Any:
    """The request's JSON value; ``{}`` for an empty body when ``optional``."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            return {}
        raise Malformed("request body is empty; send a JSON object")
    if not request.is_json:
        raise NotJson("send the body as JSON with Content-Type: application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"malformed JSON: {exc}") from None


def json_object(optional: bool = False) -> dict[str, Any]:
    from app.errors import Invalid

    value = json_body(optional)
    if not isinstance(value, dict):
        raise Invalid("body: must be a JSON object", {"body": "must be a JSON object"})
    return value
