"""RSA key pairs generated ahead of their ``create_key_pair``, in memory, for the embedded KMS.

A first provisioning looks at the user's Gmail identities (``check_existing``, a Google call)
before any KMS key is made, so that a user who already has one gets none. The embedded KMS
makes its keys in this process, so the runner asks for the key as that check starts
(``KeyManager.generate_ahead``): it is generated on the process's key-generation threads while
the worker waits on Google, and ``create_key_pair`` stores it. Nothing is stored before then,
and a key whose task ends without create_key (its user held) is dropped unused, as are those
left when the KMS is closed. At most MAX_WAITING keys wait, the oldest dropped first.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from cryptography.hazmat.primitives.asymmetric import rsa

MAX_WAITING = 256
"""Keys generated ahead and not taken yet (a few hundred KB at most)."""

_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    """One pool for the process, a thread per core: key generation is CPU-bound (and releases
    the GIL), so more threads would only queue on the cores."""
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="syncd-keygen")
        return _pool


def generate_rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


class KeysAhead:
    """Keys being generated or generated, by (label, bits), until taken."""

    def __init__(self, generate: Callable[[int], rsa.RSAPrivateKey] = generate_rsa) -> None:
        self._generate = generate
        self._waiting: OrderedDict[tuple[str, int], Future[rsa.RSAPrivateKey]] = OrderedDict()
        self._guard = threading.Lock()

    def start(self, label: str, bits: int) -> None:
        """Start generating the key ``take(label, bits)`` will return (once per label)."""
        with self._guard:
            if (label, bits) in self._waiting:
                return
            self._waiting[(label, bits)] = _threads().submit(self._generate, bits)
            while len(self._waiting) > MAX_WAITING:
                _, oldest = self._waiting.popitem(last=False)
                oldest.cancel()

    def take(self, label: str, bits: int) -> rsa.RSAPrivateKey | None:
        """The key started for (label, bits), waiting for it if need be; None if none was."""
        with self._guard:
            future = self._waiting.pop((label, bits), None)
        return None if future is None else future.result()

    def discard(self, label: str, bits: int) -> None:
        """Drop the key started for (label, bits) if it was not taken (its user was held, or
        its task ended before create_key): not yet generating, it never will."""
        with self._guard:
            future = self._waiting.pop((label, bits), None)
        if future is not None:
            future.cancel()

    def discard_all(self) -> None:
        """Drop every key not taken (the KMS is closed): those not yet generating never will,
        so a stopping process waits at most for the ones being generated."""
        with self._guard:
            futures = list(self._waiting.values())
            self._waiting.clear()
        for future in futures:
            future.cancel()

    def waiting(self) -> int:
        with self._guard:
            return len(self._waiting)
