"""What a producer may publish and how a type is declared (shared by API and dashboard)."""

from __future__ import annotations

from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.endpoints.schemas import EventTypeName


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: EventTypeName
    data: dict[str, Any]
    previous_data: dict[str, Any] | None = None
    id: str | None = Field(default=None, min_length=1, max_length=200)
    coalesce_key: str | None = Field(default=None, min_length=1, max_length=200)


class EventBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[EventIn] = Field(min_length=1, max_length=500)


class EventTypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: EventTypeName
    description: str = Field(default="", max_length=1000)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                validator_for(value).check_schema(value)
            except SchemaError as exc:
                raise ValueError(f"is not a valid JSON Schema: {exc.message}") from None
        return value


class RedeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    webhook_id: str | None = Field(default=None, max_length=40)
