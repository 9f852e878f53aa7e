"""The Gmail CSE client: key pairs and identities of one user at a time, as that user.

Writes are safe to retry. After a failure that may have been carried out (no answer, 500,
502, 504) the client looks for a key pair with the same certificate before re-sending a
``keypairs.create``, and takes a 404 on a re-sent ``obliterate`` or ``identities.delete`` as
done. A 409 on ``keypairs.create`` is answered with the existing key pair of the same
certificate, and on ``identities.create`` with the existing identity when it already points
at the same key pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from googleapiclient.discovery import Resource
from googleapiclient.http import HttpRequest

from syncd.config import GoogleConfig
from syncd.google.credentials import GMAIL_SETTINGS_SCOPE
from syncd.google.errors import GoogleAPIError
from syncd.google.retry import RetryPolicy
from syncd.google.session import GoogleSession
from syncd.pki.chain import fingerprint, parse_pkcs7

PAGE_SIZE = 100


def keypair_leaf(keypair: dict[str, Any]) -> x509.Certificate | None:
    """A Gmail key pair's leaf certificate: the first certificate of its ``pem``."""
    pem = keypair.get("pem")
    if not pem:
        return None
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return None
    return certs[0] if certs else None


def keypair_fingerprint(keypair: dict[str, Any]) -> str | None:
    """SHA-256 fingerprint (hex) of a Gmail key pair's leaf certificate."""
    leaf = keypair_leaf(keypair)
    return fingerprint(leaf) if leaf is not None else None


def pkcs7_fingerprints(pkcs7: str) -> set[str]:
    """Fingerprints of every certificate of a PKCS#7 chain (the leaf is one of them)."""
    return {fingerprint(cert) for cert in parse_pkcs7(pkcs7)}


def _cse(service: Resource, collection: str) -> Any:
    """``users.settings.cse.<collection>`` of a thread's service, built once per service:
    building a resource re-reads the discovery document's methods, about 1 ms a time."""
    built: dict[str, Any] | None = getattr(service, "_syncd_cse", None)
    if built is None:
        built = {}
        setattr(service, "_syncd_cse", built)  # noqa: B010 - Resource has no declared slot
    if collection not in built:
        built[collection] = getattr(service.users().settings().cse(), collection)()
    return built[collection]


class GmailCSE:
    """``users.settings.cse.keypairs`` and ``.identities`` through the service account."""

    def __init__(
        self,
        cfg: GoogleConfig,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.page_size = page_size
        self.session = GoogleSession(
            cfg, ("gmail", "v1"), "Gmail", [GMAIL_SETTINGS_SCOPE], retry=retry, sleep=sleep
        )

    def _call(
        self,
        method: str,
        user: str,
        make_request: Callable[[Resource], HttpRequest],
        before_retry: Callable[[], Any] | None = None,
    ) -> Any:
        return self.session.call(method, user, make_request, before_retry=before_retry)

    # --- key pairs ---------------------------------------------------------------------

    def create_keypair(
        self,
        user: str,
        pkcs7: str,
        kacls_uri: str,
        kacls_data: str,
        *,
        chain_validation: str = "all",
    ) -> dict[str, Any]:
        """Upload a key pair; returns Gmail's CseKeyPair (``keyPairId``, ``pem``, ...)."""
        body = {
            "pkcs7": pkcs7,
            "privateKeyMetadata": [
                {"kaclsKeyMetadata": {"kaclsUri": kacls_uri, "kaclsData": kacls_data}}
            ],
        }

        def already_there() -> dict[str, Any] | None:
            return self._find_in(self._all_keypairs_once(user), pkcs7_fingerprints(pkcs7))

        try:
            result: dict[str, Any] = self._call(
                "keypairs.create",
                user,
                lambda s: _cse(s, "keypairs").create(
                    userId=user, body=body, chainValidation=chain_validation
                ),
                before_retry=already_there,
            )
        except GoogleAPIError as error:
            if error.status != 409:
                raise
            existing = self._find_in(self.list_keypairs(user), pkcs7_fingerprints(pkcs7))
            if existing is None:
                raise
            return existing
        return result

    @staticmethod
    def _find_in(keypairs: list[dict[str, Any]], ours: set[str]) -> dict[str, Any] | None:
        return next((kp for kp in keypairs if keypair_fingerprint(kp) in ours), None)

    def _all_keypairs_once(self, user: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:

            def one_page(s: Resource, t: str | None = token) -> HttpRequest:
                return _cse(s, "keypairs").list(userId=user, pageSize=self.page_size, pageToken=t)

            page = self.session.once(user, one_page)
            found.extend(page.get("cseKeyPairs", []))
            token = page.get("nextPageToken")
            if not token:
                return found

    def find_keypair(self, user: str, leaf_fingerprint: str) -> dict[str, Any] | None:
        """The user's key pair whose leaf has this SHA-256 fingerprint (hex), if any."""
        wanted = leaf_fingerprint.lower().replace(":", "")
        return self._find_in(self.list_keypairs(user), {wanted})

    def list_keypairs(self, user: str) -> list[dict[str, Any]]:
        """Every key pair of the user (all pages)."""
        return self.session.all_pages(
            "keypairs.list",
            user,
            "cseKeyPairs",
            lambda s, t: _cse(s, "keypairs").list(
                userId=user, pageSize=self.page_size, pageToken=t
            ),
        )

    def get_keypair(self, user: str, key_pair_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "keypairs.get",
            user,
            lambda s: _cse(s, "keypairs").get(userId=user, keyPairId=key_pair_id),
        )
        return result

    def enable_keypair(self, user: str, key_pair_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "keypairs.enable",
            user,
            lambda s: _cse(s, "keypairs").enable(userId=user, keyPairId=key_pair_id, body={}),
        )
        return result

    def disable_keypair(self, user: str, key_pair_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "keypairs.disable",
            user,
            lambda s: _cse(s, "keypairs").disable(userId=user, keyPairId=key_pair_id, body={}),
        )
        return result

    def obliterate_keypair(self, user: str, key_pair_id: str) -> None:
        """Destroy a key pair disabled for more than 30 days (Google refuses otherwise)."""
        self._idempotent_delete(
            "keypairs.obliterate",
            user,
            lambda s: _cse(s, "keypairs").obliterate(userId=user, keyPairId=key_pair_id, body={}),
        )

    # --- identities --------------------------------------------------------------------

    def create_identity(
        self, user: str, key_pair_id: str, *, email: str | None = None
    ) -> dict[str, Any]:
        """Make the key pair the user's CSE identity (``email`` defaults to ``user``)."""
        body = {"emailAddress": email or user, "primaryKeyPairId": key_pair_id}
        try:
            result: dict[str, Any] = self._call(
                "identities.create",
                user,
                lambda s: _cse(s, "identities").create(userId=user, body=body),
            )
        except GoogleAPIError as error:
            if error.status != 409:
                raise
            existing = self.get_identity(user, body["emailAddress"])
            if existing.get("primaryKeyPairId") != key_pair_id:
                raise
            return existing
        return result

    def list_identities(self, user: str) -> list[dict[str, Any]]:
        """Every identity of the user (all pages)."""
        return self.session.all_pages(
            "identities.list",
            user,
            "cseIdentities",
            lambda s, t: _cse(s, "identities").list(
                userId=user, pageSize=self.page_size, pageToken=t
            ),
        )

    def get_identity(self, user: str, email: str | None = None) -> dict[str, Any]:
        address = email or user
        result: dict[str, Any] = self._call(
            "identities.get",
            user,
            lambda s: _cse(s, "identities").get(userId=user, cseEmailAddress=address),
        )
        return result

    def patch_identity(
        self, user: str, key_pair_id: str, *, email: str | None = None
    ) -> dict[str, Any]:
        """Point the identity at another key pair (a renewal)."""
        address = email or user
        body = {"emailAddress": address, "primaryKeyPairId": key_pair_id}
        result: dict[str, Any] = self._call(
            "identities.patch",
            user,
            lambda s: _cse(s, "identities").patch(userId=user, emailAddress=address, body=body),
        )
        return result

    def delete_identity(self, user: str, email: str | None = None) -> None:
        address = email or user
        self._idempotent_delete(
            "identities.delete",
            user,
            lambda s: _cse(s, "identities").delete(userId=user, cseEmailAddress=address),
        )

    # --- helpers -----------------------------------------------------------------------

    def _idempotent_delete(
        self, method: str, user: str, make_request: Callable[[Resource], HttpRequest]
    ) -> None:
        maybe_done = False

        def note_unknown_outcome() -> None:
            nonlocal maybe_done
            maybe_done = True

        try:
            self._call(method, user, make_request, before_retry=note_unknown_outcome)
        except GoogleAPIError as error:
            if not (error.status == 404 and maybe_done):
                raise
