"""Fixtures for the JSON transport tests: one PyKMIP server and bridges in front of it.

Import them explicitly into a test module (``from tests.kmip.bridge_fixtures import
pykmip_for_json as pykmip_for_json``); they are session-scoped, so the PyKMIP server starts
once per test worker (about a second) and is killed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncd.config import KmipConfig
from syncd.kms.kmip.json_transport import JsonTransport
from tests.kmip.json_bridge import JsonBridge
from tests.kmip.server import PyKmipServer, start_pykmip_server

TOKEN = "bridge-test-token-7Qe2"


@pytest.fixture(scope="session")
def pykmip_for_json(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PyKmipServer]:
    server = start_pykmip_server(tmp_path_factory.mktemp("pykmip-json"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cosmian_bridge(pykmip_for_json: PyKmipServer) -> Iterator[JsonBridge]:
    """A bridge impersonating Cosmian KMS 5.x over HTTPS, token ``TOKEN``."""
    bridge = JsonBridge(pykmip_for_json, TOKEN)
    try:
        yield bridge
    finally:
        bridge.stop()


def json_config(bridge: JsonBridge, pykmip: PyKmipServer, **overrides: object) -> KmipConfig:
    """The ``kms.kmip`` section a user would write for ``bridge``."""
    settings: dict[str, object] = {
        "transport": "json", "url": bridge.url, "ca_file": pykmip.client.ca, "token": TOKEN,
        "timeout": 10,
    }
    settings.update(overrides)
    return KmipConfig.model_validate(settings)


@pytest.fixture
def json_transport(cosmian_bridge: JsonBridge,
                   pykmip_for_json: PyKmipServer) -> Iterator[JsonTransport]:
    transport = JsonTransport(json_config(cosmian_bridge, pykmip_for_json))
    try:
        yield transport
    finally:
        transport.close()
