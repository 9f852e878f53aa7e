"""Injected faults: added latency, a fraction of requests answered 429/403/500/503, and
connections dropped before or after the request is carried out.

Settings come from ``faults.yaml`` in the data directory at start and from the admin endpoint
``POST /sandbox/v1/faults`` at run time. Faults apply to the Gmail and Directory APIs; the
token endpoint is affected only with ``token_endpoint: true``. ``skip_requests: N`` serves the
first N requests after the settings are applied without faults (a failure after the first
page of a listing, for example).
"""

from __future__ import annotations

import enum
import random
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Fault(enum.Enum):
    TOO_MANY_REQUESTS = "429"
    RATE_LIMIT_403 = "403"
    INTERNAL = "500"
    UNAVAILABLE = "503"
    DROP = "drop"
    """The connection is closed before the request is carried out."""
    DROP_AFTER = "drop_after"
    """The request is carried out, then the connection is closed without an answer."""


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0)
    latency_jitter_ms: float = Field(default=0.0, ge=0)
    error_429: float = Field(default=0.0, ge=0, le=1)
    error_403_rate_limit: float = Field(default=0.0, ge=0, le=1)
    error_500: float = Field(default=0.0, ge=0, le=1)
    error_503: float = Field(default=0.0, ge=0, le=1)
    drop: float = Field(default=0.0, ge=0, le=1)
    drop_after: float = Field(default=0.0, ge=0, le=1)
    retry_after_seconds: float | None = Field(default=None, ge=0)
    """Sent as ``Retry-After`` with injected 429 and 503 answers."""
    token_endpoint: bool = False
    skip_requests: int = Field(default=0, ge=0)
    """This many requests (counted after the settings are applied) are served without faults."""
    seed: int | None = None

    @model_validator(mode="after")
    def _fractions_fit(self) -> FaultSettings:
        if sum(f for f, _ in self.fractions()) > 1.0 + 1e-9:
            raise ValueError("the fault fractions add up to more than 1")
        return self

    def fractions(self) -> list[tuple[float, Fault]]:
        return [
            (self.error_429, Fault.TOO_MANY_REQUESTS),
            (self.error_403_rate_limit, Fault.RATE_LIMIT_403),
            (self.error_500, Fault.INTERNAL),
            (self.error_503, Fault.UNAVAILABLE),
            (self.drop, Fault.DROP),
            (self.drop_after, Fault.DROP_AFTER),
        ]


def choose_fault(settings: FaultSettings, draw: float) -> Fault | None:
    """The fault for a request whose uniform random draw in [0, 1) is ``draw``."""
    threshold = 0.0
    for fraction, fault in settings.fractions():
        threshold += fraction
        if draw < threshold:
            return fault
    return None


def parse_settings(data: dict[str, Any]) -> FaultSettings:
    """Validated settings; ValueError with a one-line reason otherwise."""
    try:
        return FaultSettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "faults"
        raise ValueError(f"{where}: {first['msg']}") from None


class FaultInjector:
    """The current settings and a random source; safe to use from many threads."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._random = random.Random()
        self._skipped = 0
        self.configure(settings or FaultSettings())

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def configure(self, settings: FaultSettings) -> None:
        with self._lock:
            self._settings = settings
            self._random = random.Random(settings.seed)
            self._skipped = 0

    def draw(self, is_token_endpoint: bool) -> tuple[float, Fault | None]:
        """(latency in seconds, fault or None) for one request."""
        with self._lock:
            settings = self._settings
            if is_token_endpoint and not settings.token_endpoint:
                return 0.0, None
            if self._skipped < settings.skip_requests:
                self._skipped += 1
                return 0.0, None
            jitter = self._random.uniform(0, settings.latency_jitter_ms)
            fault = choose_fault(settings, self._random.random())
        return (settings.latency_ms + jitter) / 1000.0, fault

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
