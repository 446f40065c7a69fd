"""Strict configuration from environment variables: a bad value stops start-up."""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    redis_url: str | None
    secret_key: str
    encryption_keys: tuple[str, ...]
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    retry_schedule: tuple[int, ...]
    timeout: float
    max_body_bytes: int
    redis_prefix: str
    worker_threads: int
    endpoint_concurrency: int
    batch_size: int
    sweep_interval: float
    assets_cdn: bool = False
    api_rate_limit: str = "1000 per second"
    login_rate_limit: str = "30 per minute"
    retention_days: int = 30
    retention_batch: int = 1000
    retention_interval: float = 3600.0
    log_format: str = "text"
    log_level: str = "INFO"
    proxy_fix: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if raw.lower() not in allowed:
        raise ConfigError(f"{name}: must be one of {', '.join(allowed)}, got {raw!r}")
    return raw.lower()


def _schedule(raw: str) -> tuple[int, ...]:
    try:
        delays = tuple(int(part) for part in raw.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"HERALD_RETRY_SCHEDULE: expected comma-separated seconds such as "
            f"60,300,1800,7200, got {raw!r}"
        ) from None
    if not delays or any(d < 0 or d > 7 * 86400 for d in delays) or len(delays) > 20:
        raise ConfigError("HERALD_RETRY_SCHEDULE: give 1 to 20 delays, each 0 to 604800 seconds")
    return delays


def _networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            nets.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"HERALD_ALLOW_NETWORKS: {part.strip()!r} is not a CIDR") from None
    return tuple(nets)


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A rate limit such as ``100 per second`` or ``10/minute;100/hour`` (Flask-Limiter's form)."""
    from limits import parse_many

    raw = env.get(name, "").strip() or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(
            f"{name}: expected a rate such as '100 per second', got {raw!r}"
        ) from None
    return raw


def _dev_file(instance: Path, name: str, make: str) -> str:
    """Read a development-only generated value from instance/, creating it once."""
    path = instance / name
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(make)
    return path.read_text().strip()


def _fernet_keys(raw: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for key in keys:
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ConfigError(
                "HERALD_ENCRYPTION_KEYS: each key must be a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    if not keys:
        raise ConfigError("HERALD_ENCRYPTION_KEYS: at least one key is required")
    return keys


def load_settings(env: Mapping[str, str], instance: Path) -> Settings:
    """Parse Herald's environment variables, raising ConfigError on the first bad one."""
    herald_env = env.get("HERALD_ENV", "development").strip() or "development"
    if herald_env not in {"development", "production", "test"}:
        raise ConfigError("HERALD_ENV: must be development, production or test")
    production = herald_env == "production"

    database_url = env.get("DATABASE_URL", "").strip()
    if not database_url:
        database_url = f"sqlite:///{instance / 'herald.db'}"
    elif database_url.startswith(("postgres://", "postgresql://")):
        # psycopg 3 is the driver we ship; plain URLs would ask for psycopg2.
        database_url = "postgresql+psycopg://" + database_url.split("://", 1)[1]
    elif not database_url.startswith(("sqlite:", "postgresql+psycopg:")):
        raise ConfigError("DATABASE_URL: must be a sqlite:// or postgresql:// URL")

    redis_url = env.get("REDIS_URL", "").strip() or None
    if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL: must be a redis://, rediss:// or unix:// URL")

    secret_key = env.get("SECRET_KEY", "").strip()
    if not secret_key:
        if production:
            raise ConfigError("SECRET_KEY: required when HERALD_ENV=production")
        secret_key = _dev_file(instance, "secret_key", secrets.token_urlsafe(48))
    elif len(secret_key) < 16:
        raise ConfigError("SECRET_KEY: use at least 16 characters")

    raw_keys = env.get("HERALD_ENCRYPTION_KEYS", "").strip()
    if not raw_keys:
        if production:
            raise ConfigError("HERALD_ENCRYPTION_KEYS: required when HERALD_ENV=production")
        raw_keys = _dev_file(instance, "encryption_keys", Fernet.generate_key().decode())

    prefix = env.get("HERALD_REDIS_PREFIX", "herald").strip()
    if not prefix or not prefix.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("HERALD_REDIS_PREFIX: letters, digits, - and _ only")

    return Settings(
        env=herald_env,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=secret_key,
        encryption_keys=_fernet_keys(raw_keys),
        allow_networks=_networks(env.get("HERALD_ALLOW_NETWORKS", "")),
        retry_schedule=_schedule(env.get("HERALD_RETRY_SCHEDULE", "60,300,1800,7200")),
        timeout=_float(env, "HERALD_TIMEOUT", 10.0, 0.1, 120.0),
        max_body_bytes=_int(env, "HERALD_MAX_BODY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
        redis_prefix=prefix,
        worker_threads=_int(env, "HERALD_WORKER_THREADS", 32, 1, 512),
        endpoint_concurrency=_int(env, "HERALD_ENDPOINT_CONCURRENCY", 8, 1, 256),
        batch_size=_int(env, "HERALD_BATCH_SIZE", 200, 1, 5000),
        sweep_interval=_float(env, "HERALD_SWEEP_INTERVAL", 1.0, 0.05, 300.0),
        assets_cdn=_bool(env, "HERALD_ASSETS_CDN"),
        api_rate_limit=_rate_limit(env, "HERALD_API_RATE_LIMIT", "1000 per second"),
        login_rate_limit=_rate_limit(env, "HERALD_LOGIN_RATE_LIMIT", "30 per minute"),
        retention_days=_int(env, "HERALD_RETENTION_DAYS", 30, 1, 3650),
        retention_batch=_int(env, "HERALD_RETENTION_BATCH", 1000, 10, 100_000),
        retention_interval=_float(env, "HERALD_RETENTION_INTERVAL", 3600.0, 1.0, 86400.0),
        # Production logs go to journald or a collector: one JSON object a line by default.
        log_format=_choice(
            env, "HERALD_LOG_FORMAT", "json" if production else "text", ("json", "text")
        ),
        log_level=_choice(
            env, "HERALD_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
        ).upper(),
        # How many proxies in front set X-Forwarded-*: 0 (default) trusts none of them.
        proxy_fix=_int(env, "HERALD_PROXY_FIX", 0, 0, 5),
    )
