"""``bench/google_floor.py`` provisions its own mailboxes through the client libraries alone:
one token grant and the three Gmail calls a user, each answered as a first provisioning's
would be: no identity yet, then a key pair and an identity created (judged by the sandbox's
own counts of answers, not by the bench). No timing is asserted."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is the repository's, not a package of the project
    sys.path.insert(0, str(REPO))

from bench.google_floor import client_mailboxes, measure_libraries  # noqa: E402
from syncd.config import CertificateConfig  # noqa: E402
from syncd.pki.profile import LeafProfile  # noqa: E402
from syncd.sandbox.seed import init_sandbox_data  # noqa: E402
from syncd.sandbox.server import SandboxServer  # noqa: E402
from tests.support.sandbox import SERVICE_ACCOUNT, register_service_account  # noqa: E402
from tests.support.testca import make_test_hierarchy  # noqa: E402

DOMAIN = "bench.example"


def test_each_mailbox_gets_one_key_pair_and_one_identity(tmp_path: Path) -> None:
    hierarchy = make_test_hierarchy()
    mailboxes = client_mailboxes(DOMAIN, 5)
    root_pem = hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    init_sandbox_data(tmp_path / "sandbox", DOMAIN, [*mailboxes, f"other@{DOMAIN}"], root_pem)
    server = SandboxServer(tmp_path / "sandbox").start()
    try:
        key_file = tmp_path / "service-account.json"
        key_file.write_text(
            json.dumps(
                register_service_account(tmp_path / "sandbox", SERVICE_ACCOUNT, server.token_uri)
            )
        )
        cost = measure_libraries(
            service_account_file=key_file,
            endpoint=server.url,
            hierarchy=hierarchy,
            profile=LeafProfile.from_config(CertificateConfig()),
            mailboxes=mailboxes,
            workers=2,
            sandbox_pid=os.getpid(),  # the sandbox runs in this process here
        )
        stats = server.app.stats.snapshot()["methods"]
    finally:
        server.stop()

    assert cost.users == 5 and cost.client_cpu > 0 and cost.per_user > 0
    answers = {name: entry["answers"] for name, entry in stats.items()}
    assert answers == {
        "oauth2.token": {"200": 5},
        "gmail.users.settings.cse.identities.get": {"404": 5},
        "gmail.users.settings.cse.keypairs.create": {"200": 5},
        "gmail.users.settings.cse.identities.create": {"200": 5},
    }
