"""Structured logs: one JSON object a line (HERALD_LOG_FORMAT=json), never a secret.

Delivery lines carry ``event_id``, ``delivery_id`` and ``webhook_id`` as fields, so an operator
can follow one event through every attempt with a single filter in their log tool.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from app.config import Settings

if TYPE_CHECKING:
    from app.deliveries.engine import Recorded

# Values that must never reach a log line, whatever a caller passes: signing secrets, API
# keys, bearer tokens and signatures (a signature of a known body helps an attacker guess).
_SECRET_PATTERNS = [
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_[redacted]"),
    (re.compile(r"\bhk_[A-Za-z0-9_-]{8,}"), "hk_[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[^\s\"',]+"), r"\1[redacted]"),
    (re.compile(r"\bv1,[A-Za-z0-9+/=]{20,}"), "v1,[redacted]"),
]
_SECRET_FIELDS = re.compile(r"(?i)secret|password|authorization|signature|token|api_key|cookie")

# LogRecord's own attributes; anything else on a record came from ``extra=`` and is a field.
_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_HANDLER_MARK = "_herald_handler"


# One scan that every secret pattern needs to match: most values (ids, statuses) fail it,
# and a delivery line has a dozen of them, so this keeps logging off the hot path's profile.
_MAYBE_SECRET = re.compile(r"whsec_|hk_|(?i:bearer)|v1,")


def scrub(text: str) -> str:
    """The text with every secret-looking value replaced by a marker."""
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_field(name: str) -> bool:
    return _SECRET_FIELDS.search(name) is not None


def _clean(name: str, value: Any) -> Any:
    if _secret_field(name):
        return "[redacted]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return scrub(str(value))


def _extra_fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The fields a caller passed with ``extra=``, in the order given."""
    return [
        (name, value)
        for name, value in record.__dict__.items()
        if name not in _RECORD_ATTRS and name[0] != "_"
    ]


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "gunicorn.access" and isinstance(record.args, dict):
            data.update(_access_fields(record.args))
            data["message"] = f"{data['method']} {data['path']} {data['status']}"
        else:
            data["message"] = scrub(record.getMessage())
        for name, value in _extra_fields(record):
            data[name] = _clean(name, value)
        if record.exc_info:
            data["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The human format for development, with the same scrubbing and the fields appended."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = scrub(super().format(record))
        fields = [f"{name}={_clean(name, value)}" for name, value in _extra_fields(record)]
        return " ".join([line, *fields])


def _access_fields(atoms: dict[str, Any]) -> dict[str, Any]:
    """gunicorn's access-log atoms as fields; the query string is left out (it may hold ids)."""
    try:
        status: Any = int(atoms.get("s", 0))
    except ValueError:
        status = atoms.get("s")
    return {
        "event": "http_request",
        "method": atoms.get("m"),
        "path": atoms.get("U"),
        "status": status,
        "duration_ms": round(int(atoms.get("D", 0)) / 1000, 1),
        "bytes": atoms.get("B"),
        "remote_addr": atoms.get("h"),
        "user_agent": scrub(str(atoms.get("a", ""))),
    }


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for HERALD_LOG_FORMAT (``json`` or ``text``)."""
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure_logging(settings: Settings, loggers: Sequence[str] = ("",)) -> None:
    """Send Herald's logs to stderr in the configured format (idempotent; tests call it often)."""
    for name in loggers:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if getattr(handler, _HANDLER_MARK, False):
                logger.removeHandler(handler)
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(make_formatter(settings.log_format))
        logger.addHandler(handler)
        logger.setLevel(settings.log_level)
    # Alembic's fileConfig (flask db upgrade in this process) disables every logger that
    # existed before it ran; Herald's own must keep logging.
    for name, known in logging.root.manager.loggerDict.items():
        if isinstance(known, logging.Logger) and name.startswith(("app", "herald", "rq")):
            known.disabled = False


_delivery_log = logging.getLogger("herald.delivery")


def log_attempts(recorded: Sequence[Recorded]) -> None:
    """One line per attempt, with the ids to follow an event (never headers or the body)."""
    if not _delivery_log.isEnabledFor(logging.INFO):
        return
    for item in recorded:
        outcome = item.outcome
        level = logging.INFO if outcome.ok else logging.WARNING
        if not _delivery_log.isEnabledFor(level):
            continue
        # makeRecord + handle is what Logger.log does, less its walk up the stack for the
        # caller's file and line (always this function): a line per attempt must be cheap.
        record = _delivery_log.makeRecord(
            _delivery_log.name,
            level,
            __file__,
            0,
            "attempt %s of delivery %s: %s",
            (
                item.send.number,
                item.send.delivery_id,
                "success" if outcome.ok else (outcome.error or f"HTTP {outcome.http_status}"),
            ),
            None,
            func="log_attempts",
            extra={
                "event": "delivery_attempt",
                "event_id": item.send.event_id,
                "event_type": item.send.event_type,
                "delivery_id": item.send.delivery_id,
                "webhook_id": item.send.endpoint_id,
                "attempt_id": item.attempt_id,
                "attempt": item.send.number,
                "trigger": item.send.trigger,
                "outcome": "success" if outcome.ok else "failure",
                "http_status": outcome.http_status,
                "duration_ms": outcome.duration_ms,
                "delivery_status": item.final_status,
                "next_attempt_at": (
                    item.next_attempt_at.isoformat() if item.next_attempt_at else None
                ),
            },
        )
        _delivery_log.handle(record)
