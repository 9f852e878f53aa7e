"""The Google client libraries alone: the CPU a first provisioning's Google calls cost with no
syncd code between them, for the benchmarks to set against syncd's.

Per user, on W threads, one token grant for the user (google-auth's service account
credentials with the user as subject, refreshed over google_auth_httplib2), then
``identities.get`` (a 404), ``keypairs.create`` and ``identities.create`` through
googleapiclient and its own httplib2.Http per thread: the four exchanges a pipeline's first
provisioning makes (bench/latency.py counts them from the sandbox's stats). The certificates
are issued before the clock starts (from a few keys: key generation and issuance are the
crypto floor's, not the libraries'), for mailboxes of their own (``client_mailboxes``) so
that the pipeline's users are left alone.

It reports the CPU a user of this process (the libraries) and of the sandbox (which stands in
for Google on the same cores). Those are a floor under what any provisioning through the real
client libraries costs on this machine, so together with the crypto floor they bound the
throughput the cores allow, whatever syncd's own work costs.
"""

from __future__ import annotations

import base64
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from bench.cpu import own_cpu_seconds, process_cpu_seconds
from syncd.google.credentials import GMAIL_SETTINGS_SCOPE
from syncd.pki.chain import pkcs7_pem
from syncd.pki.issue import issue_leaf
from syncd.pki.profile import LeafProfile
from tests.support.testca import TestHierarchy

CALLS = ("oauth2.token", "identities.get", "keypairs.create", "identities.create")
KEYS = 8
"""Distinct keys the certificates are issued for (Gmail takes one key in several users'
certificates; generating one a user would only slow the set-up)."""
KACLS_DATA_BYTES = 300
"""About the size of a wrapped 2048-bit private key, as ``kaclsData`` carries it."""


def client_mailboxes(domain: str, users: int) -> list[str]:
    """The mailboxes the measurement provisions (add them to the sandbox's data)."""
    return [f"client{number:05d}@{domain}" for number in range(users)]


@dataclass(frozen=True)
class LibraryCost:
    """CPU seconds of the libraries' calls for ``users`` users."""

    users: int
    client_cpu: float
    """This process (google-auth, googleapiclient, httplib2)."""
    sandbox_cpu: float

    @property
    def per_user(self) -> float:
        """CPU seconds a user, both sides."""
        return (self.client_cpu + self.sandbox_cpu) / self.users

    def describe(self) -> str:
        return (
            f"Google client libraries alone ({' + '.join(CALLS)}, no syncd code): "
            f"{1000 * self.client_cpu / self.users:.1f} ms + sandbox "
            f"{1000 * self.sandbox_cpu / self.users:.1f} ms a user"
        )


def measure_libraries(
    *,
    service_account_file: Path,
    endpoint: str,
    hierarchy: TestHierarchy,
    profile: LeafProfile,
    mailboxes: list[str],
    workers: int,
    sandbox_pid: int,
) -> LibraryCost:
    """Provision ``mailboxes`` with the libraries alone on ``workers`` threads (see above)."""
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(KEYS)]
    signer = hierarchy.signer(profile.hash)
    now = datetime.now(UTC)
    chains = [
        pkcs7_pem(
            [
                issue_leaf(
                    mailbox,
                    keys[number % KEYS].public_key(),
                    hierarchy.intermediate_cert,
                    signer,
                    profile,
                    now,
                ),
                hierarchy.intermediate_cert,
            ]
        )
        for number, mailbox in enumerate(mailboxes)
    ]
    base = service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        str(service_account_file), scopes=[GMAIL_SETTINGS_SCOPE]
    )
    local = threading.local()

    def thread_parts() -> tuple[httplib2.Http, Any]:
        if not hasattr(local, "parts"):
            http = httplib2.Http(timeout=60)
            service = build(
                "gmail",
                "v1",
                http=http,
                static_discovery=True,
                cache_discovery=False,
                client_options={"api_endpoint": endpoint},
            )
            local.parts = (http, service)
        return local.parts  # type: ignore[no-any-return]

    def provision(number: int) -> None:
        http, service = thread_parts()
        user = mailboxes[number]
        creds = base.with_subject(user)
        creds.refresh(google_auth_httplib2.Request(http))  # type: ignore[no-untyped-call]
        authed = google_auth_httplib2.AuthorizedHttp(creds, http=http)
        cse = service.users().settings().cse()
        try:
            cse.identities().get(userId=user, cseEmailAddress=user).execute(http=authed)
            raise SystemExit(f"bench: {user} already has an identity in the sandbox")
        except HttpError as error:
            if error.resp.status != 404:
                raise
        metadata = {
            "kaclsUri": "https://kacls.bench.example/google_cse",
            "kaclsData": base64.b64encode(os.urandom(KACLS_DATA_BYTES)).decode(),
        }
        body = {"pkcs7": chains[number], "privateKeyMetadata": [{"kaclsKeyMetadata": metadata}]}
        keypair = cse.keypairs().create(userId=user, body=body).execute(http=authed)
        cse.identities().create(
            userId=user, body={"emailAddress": user, "primaryKeyPairId": keypair["keyPairId"]}
        ).execute(http=authed)

    sandbox_before = process_cpu_seconds(sandbox_pid)
    own_before = own_cpu_seconds()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(provision, range(len(mailboxes))))
    return LibraryCost(
        users=len(mailboxes),
        client_cpu=own_cpu_seconds() - own_before,
        sandbox_cpu=process_cpu_seconds(sandbox_pid) - sandbox_before,
    )


def ceiling_rate(cores: int, floor_cpu_per_user: float, libraries: LibraryCost) -> float:
    """Users/s the cores allow when a user costs the crypto floor's CPU and the libraries'
    calls (both sides) and nothing else: no pipeline through these libraries on this machine
    goes faster, whatever its own work costs."""
    return cores / (floor_cpu_per_user + libraries.per_user)
