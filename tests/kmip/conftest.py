"""A real PyKMIP server, started once per test worker, and syncd configurations that use it."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.config import Config, parse_config
from tests.kmip.server import ClientFiles, PyKmipServer, start_pykmip_server


@pytest.fixture(scope="session")
def pykmip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyKmipServer]:
    server = start_pykmip_server(tmp_path_factory.mktemp("pykmip"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kacls_key() -> bytes:
    """The KACLS key (AES-256) syncd wraps with on the client side."""
    return os.urandom(32)


KmipConfigFactory = Callable[..., Config]


@pytest.fixture
def kmip_config(pykmip_server: PyKmipServer, kacls_key: bytes) -> KmipConfigFactory:
    """``kmip_config(**kmip_overrides, kacls={...}, files=...)``: a Config with
    ``kms.backend: kmip`` over the binary transport to the test server, as ``files`` (default:
    the accepted client), with the KACLS key given inline unless ``kacls`` says otherwise."""

    def build(
        *, files: ClientFiles | None = None, kacls: dict[str, Any] | None = None, **kmip: Any
    ) -> Config:
        settings = {"transport": "binary", "timeout": 10, **kmip}
        section = pykmip_server.kmip_section(files, **settings)
        kacls_section = {"wrapping_key": base64.b64encode(kacls_key).decode()}
        if kacls is not None:
            kacls_section = kacls
        return parse_config(
            {"kms": {"backend": "kmip", "kmip": section}, "kacls": kacls_section},
            Path.cwd() / "syncd.yaml",
        )

    return build
