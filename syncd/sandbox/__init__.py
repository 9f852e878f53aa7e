"""A local emulator of the Google APIs syncd uses: OAuth2 tokens, Gmail CSE, Directory.

See server.py (running it under waitress), wsgi.py (the WSGI adapter), app.py (dispatch and
admin endpoints), store.py (the data directory). Test fixtures are in tests/support/sandbox.py.
"""

from syncd.sandbox.faults import FaultSettings
from syncd.sandbox.seed import create_service_account, init_sandbox_data
from syncd.sandbox.server import SandboxServer, serve

__all__ = [
    "FaultSettings",
    "SandboxServer",
    "create_service_account",
    "init_sandbox_data",
    "serve",
]
