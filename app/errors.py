"""Domain errors; the API turns them into API.md's JSON error shape."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


class HeraldError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(HeraldError):
    status = 404
    code = "not_found"


class Conflict(HeraldError):
    status = 409
    code = "conflict"


class Invalid(HeraldError):
    status = 422
    code = "validation_error"

    @classmethod
    def field(cls, name: str, problem: str) -> Invalid:
        return cls(f"{name}: {problem}", {name: problem})

    @classmethod
    def from_pydantic(cls, exc: ValidationError) -> Invalid:
        fields: dict[str, str] = {}
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "body"
            msg = err["msg"].removeprefix("Value error, ")
            fields.setdefault(name, msg)
        first = next(iter(fields.items()))
        return cls(f"{first[0]}: {first[1]}", fields)


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any) -> M:
    """Validate ``body`` against a pydantic model, raising Invalid with per-field messages."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise Invalid.from_pydantic(exc) from None
