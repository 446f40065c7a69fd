"""The per-app services built from Settings: secret box, broker, retry policy, transport."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from flask import Flask, current_app

from app.config import Settings
from app.crypto import SecretBox
from app.deliveries.retry import RetryPolicy
from app.queue import Broker
from app.transport import Transport


@dataclass
class Runtime:
    settings: Settings
    instance: Path

    @cached_property
    def box(self) -> SecretBox:
        return SecretBox(self.settings.encryption_keys)

    @cached_property
    def broker(self) -> Broker:
        return Broker(self.settings, self.instance)

    @cached_property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.settings.retry_schedule)

    @cached_property
    def transport(self) -> Transport:
        return Transport(
            self.settings.timeout,
            # A fast endpoint may have most of the worker's requests in flight (jobs.py): one
            # kept-alive connection each.
            pool_size=self.settings.worker_threads,
            allow=self.settings.allow_networks,
        )


def init_runtime(app: Flask, settings: Settings) -> Runtime:
    rt = Runtime(settings, Path(app.instance_path))
    app.extensions["herald"] = rt
    return rt


def runtime() -> Runtime:
    """The current app's Runtime (needs an app context)."""
    rt: Runtime = current_app.extensions["herald"]
    return rt
