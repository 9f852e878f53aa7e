"""The KMS backends a command or a pass may need: the configured one, for every new key, and
the ones that hold keys made before ``kms.backend`` changed, opened only when first needed.

Each key pair and each issuer records the backend that holds its key (``kms_backend``): a key
is wrapped, signed with and revoked by that backend, so switching ``kms.backend`` keeps the
existing users working until their next renewal makes a key in the configured one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from syncd.errors import ConfigError
from syncd.kms.base import KeyManager

BACKENDS = ("local", "kmip")


def holder_needed(recorded: str, configured: str) -> str:
    """The note a ConfigError gets when the backend holding older keys cannot be opened."""
    return (
        f"needed for the keys the {recorded} backend holds (made before kms.backend became "
        f"{configured}); keep its settings until those users are renewed"
    )


class Keyring:
    """The configured backend and, on demand, the others (thread-safe)."""

    def __init__(self, configured: KeyManager, open_backend: Callable[[str], KeyManager]) -> None:
        self.configured = configured
        """Where new key pairs (provisions, renewals) and imported issuers go."""
        self._open_backend = open_backend
        self._opened: dict[str, KeyManager] = {configured.name: configured}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.configured.name

    def holding(self, backend: str | None) -> KeyManager:
        """The backend that holds a key recorded as made by ``backend`` (None: the configured).

        Another backend is opened the first time it is needed; a ConfigError names the
        configuration key that stops it from opening.
        """
        if backend is None or backend == self.configured.name:
            return self.configured
        with self._lock:
            opened = self._opened.get(backend)
            if opened is not None:
                return opened
            if backend not in BACKENDS:
                raise ConfigError(
                    "kms.backend",
                    f"a key is held by the backend {backend!r}, which this syncd does not know",
                )
            try:
                opened = self._open_backend(backend)
            except ConfigError as error:
                note = holder_needed(backend, self.configured.name)
                raise ConfigError(error.where, f"{error.problem} ({note})") from None
            self._opened[backend] = opened
            return opened

    def close(self) -> None:
        """Close every backend opened (those with a ``close``: connections to a KMS)."""
        with self._lock:
            managers = list(self._opened.values())
        for manager in managers:
            close = getattr(manager, "close", None)
            if callable(close):
                close()
