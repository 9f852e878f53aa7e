"""Credentials made by hand before syncd (``policy.existing_credentials``): held, adopted or
replaced.

Organisations that followed Google's guide by hand (Cosmian CLI, GAM) already have a CSE
identity and key pair that syncd did not make. ``check_existing`` is the first step of a
provisioning, before any KMS key or certificate is made: it looks for the user's identity and,
when it points at a key pair syncd does not know,

- ``hold`` (the default): refuses permanently, with a message saying what was found and what
  to do; the plan then holds the user (ReasonCode.EXISTING_CREDENTIALS) and nothing in Gmail
  changes;
- ``adopt``: takes the key pair over when it is enabled and its certificate is valid, for the
  user's address and issued by an imported issuing CA: it is recorded on the task's generation
  (``origin`` adopted, no KMS key), the later steps find nothing to make, and it is renewed
  like any other credential when due (the renewal's key is made in syncd's KMS); a key pair
  that cannot be adopted is refused permanently with the reasons;
- ``replace``: looks for nothing; ``insert_identity`` points the identity at syncd's new key
  pair and audits the key pair it replaced (``replaced_existing``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AuthorityInformationAccessOID

from syncd.credentials.issuers import IssuingCA
from syncd.domain import EXISTING_CREDENTIALS_PREFIX
from syncd.errors import PermanentError
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import keypair_leaf
from syncd.pipeline.steps.base import (
    KeyPairView,
    Outcome,
    Services,
    Work,
    current_identity,
    not_found,
    target_of,
)
from syncd.pki.chain import describe, fingerprint
from syncd.pki.validate import chain_violations, kacls_violations, leaf_violations

ADOPTED = "adopted"
"""``key_pairs.origin`` of a key pair syncd took over."""


class ExistingCredentialsError(PermanentError):
    """The user has a CSE identity syncd did not make, and the policy does not let syncd take
    it over (hold), or it cannot be taken over (adopt). The message begins with
    :data:`syncd.domain.EXISTING_CREDENTIALS_PREFIX`."""


def check_existing(work: Work, services: Services) -> Outcome:
    """Hold or adopt an identity syncd did not make (see the module docstring)."""
    target = target_of(work)
    mode = services.existing_credentials
    if mode == "replace" or target.gmail_key_pair_id:
        return Outcome()
    if not work.email.isascii():
        # Google keeps primary addresses ASCII: Gmail cannot hold an identity for this one,
        # and create_key refuses it permanently (no certificate can name it).
        return Outcome()
    identity = current_identity(work, services)
    pointed = list(dict.fromkeys(pointed_key_pairs(identity))) if identity else []
    unknown = [k for k in pointed if k not in _known_ids(work)]
    if not unknown:
        return Outcome()
    if len(pointed) > 1:  # separate signing and encryption key pairs: never syncd's
        raise _split_refusal(work.email, pointed, mode)
    [found] = unknown
    keypair = _keypair(work.email, found, services)
    leaf = keypair_leaf(keypair) if keypair is not None else None
    if leaf is not None and fingerprint(leaf) in _known_fingerprints(work):
        return Outcome()  # one of syncd's own, its Gmail id not recorded: nothing to hold
    if mode != "adopt":
        raise ExistingCredentialsError(f"{_found(work.email, found, leaf)}; {_HOLD}{work.email}")
    issuer, refusals = _adoptable(work.email, keypair, leaf, services)
    if issuer is None or leaf is None:
        raise ExistingCredentialsError(
            f"{_found(work.email, found, leaf)}; {_NOT_ADOPTABLE.format('; '.join(refusals))}"
            f"{work.email}"
        )
    return _adopt(target, work.email, found, leaf, issuer)


_HOLD = (
    "policy.existing_credentials is hold: set it to adopt (take over a valid key pair) or "
    "replace, then syncd resync --user "
)
_NOT_ADOPTABLE = (
    "policy.existing_credentials is adopt, but it cannot be adopted: {}. Replace it by hand, "
    "or set policy.existing_credentials to replace, then syncd resync --user "
)


def pointed_key_pairs(identity: dict[str, Any]) -> list[str]:
    """The key pairs a CSE identity names: its primary one, or its signing and encryption
    ones (an identity syncd makes always names one primary key pair)."""
    if identity.get("primaryKeyPairId"):
        return [str(identity["primaryKeyPairId"])]
    pairs = identity.get("signAndEncryptKeyPairs") or {}
    return [str(pairs[k]) for k in ("signingKeyPairId", "encryptionKeyPairId") if pairs.get(k)]


def _split_refusal(email: str, pointed: list[str], mode: str) -> ExistingCredentialsError:
    signing, encryption = pointed
    found = (
        f"{EXISTING_CREDENTIALS_PREFIX}{email} points at key pairs {signing} (signing) and "
        f"{encryption} (encryption), not made by syncd"
    )
    if mode != "adopt":
        return ExistingCredentialsError(f"{found}; {_HOLD}{email}")
    reason = "syncd adopts an identity with one key pair for signing and encryption"
    return ExistingCredentialsError(f"{found}; {_NOT_ADOPTABLE.format(reason)}{email}")


def _known_ids(work: Work) -> set[str]:
    views: tuple[KeyPairView, ...] = (*((work.target,) if work.target else ()), *work.others)
    return {v.gmail_key_pair_id for v in views if v.gmail_key_pair_id}


def _known_fingerprints(work: Work) -> set[str]:
    views: tuple[KeyPairView, ...] = (*((work.target,) if work.target else ()), *work.others)
    return {v.fingerprint_sha256 for v in views if v.fingerprint_sha256}


def _keypair(email: str, key_pair_id: str, services: Services) -> dict[str, Any] | None:
    try:
        return services.gmail.get_keypair(email, key_pair_id)
    except GoogleAPIError as error:
        if not_found(error):
            return None
        raise


def _found(email: str, key_pair_id: str, leaf: x509.Certificate | None) -> str:
    what = (
        f"{EXISTING_CREDENTIALS_PREFIX}{email} points at key pair {key_pair_id}, not made by syncd"
    )
    if leaf is None:
        return what
    return (
        f"{what} (certificate {describe(leaf)}, issued by {leaf.issuer.rfc4514_string()}, "
        f"expires {leaf.not_valid_after_utc:%Y-%m-%d})"
    )


def _adoptable(
    email: str,
    keypair: dict[str, Any] | None,
    leaf: x509.Certificate | None,
    services: Services,
) -> tuple[IssuingCA | None, list[str]]:
    """The imported issuer the key pair's certificate chains to, or None and every reason it
    cannot be adopted."""
    if keypair is None:
        return None, ["Gmail has no such key pair"]
    refusals = []
    state = keypair.get("enablementState")
    if state != "enabled":
        refusals.append(f"the key pair is {state or 'in an unknown state'}, not enabled")
    if leaf is None:
        return None, [*refusals, "the key pair carries no readable certificate"]
    now = services.clock()
    refusals += leaf_violations(leaf, email, now) + kacls_violations(leaf)
    issuer, chain = _issuer_of(leaf, services, now)
    refusals += chain
    return (issuer if not refusals else None), refusals


def _issuer_of(
    leaf: x509.Certificate, services: Services, now: datetime
) -> tuple[IssuingCA | None, list[str]]:
    """The first imported issuer (the configured one first) the leaf chains to; else None and
    why it does not chain to the configured one."""
    candidates = [
        services.issuer,
        *(i for i in services.issuers if i.label != services.issuer.label),
    ]
    first: list[str] = []
    for issuer in candidates:
        roots = [issuer.root] if issuer.root is not None else []
        found = chain_violations(leaf, issuer.intermediates, roots, now)
        if not found:
            return issuer, []
        first = first or found
    labels = ", ".join(issuer.label for issuer in candidates)
    return None, [*first, f"its certificate is not issued by an imported issuing CA ({labels})"]


def certificate_profile(leaf: x509.Certificate, email: str, issuer: str) -> dict[str, object]:
    """What a certificate made elsewhere carries, in the form of
    :meth:`syncd.plan.DesiredProfile.record` (less the subject template, which cannot be read
    back from a subject)."""
    key = leaf.public_key()
    digest = leaf.signature_hash_algorithm
    return {
        "key_bits": key.key_size if isinstance(key, rsa.RSAPublicKey) else None,
        "hash": digest.name if digest is not None else None,
        "crl": _crl_uris(leaf),
        "aia_ca_issuers": _aia_uris(leaf, AuthorityInformationAccessOID.CA_ISSUERS),
        "aia_ocsp": _aia_uris(leaf, AuthorityInformationAccessOID.OCSP),
        "issuer": issuer,
        "aliases": sorted(
            name for name in _san_emails(leaf) if name.casefold() != email.casefold()
        ),
    }


def _crl_uris(leaf: x509.Certificate) -> list[str]:
    try:
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    return [
        name.value
        for point in points
        for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier)
    ]


def _aia_uris(leaf: x509.Certificate, method: x509.ObjectIdentifier) -> list[str]:
    try:
        access = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [
        d.access_location.value
        for d in access
        if d.access_method == method
        and isinstance(d.access_location, x509.UniformResourceIdentifier)
    ]


def _san_emails(leaf: x509.Certificate) -> list[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.RFC822Name))


def _adopt(
    target: KeyPairView, email: str, key_pair_id: str, leaf: x509.Certificate, issuer: IssuingCA
) -> Outcome:
    """The key pair recorded on the target generation, still pending: insert_identity finds
    the identity already pointing at it and makes it active."""
    key = leaf.public_key()
    serial = format(leaf.serial_number, "x")
    digest = fingerprint(leaf)
    audit = {
        "adopted": key_pair_id,
        "fingerprint": digest,
        "serial": serial,
        "issuer": issuer.label,
        "not_after": leaf.not_valid_after_utc.isoformat(),
    }
    return Outcome(audit=audit).update(
        target.id,
        certificate_pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        fingerprint_sha256=digest,
        serial_hex=serial,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        gmail_key_pair_id=key_pair_id,
        key_bits=key.key_size if isinstance(key, rsa.RSAPublicKey) else None,
        origin=ADOPTED,
        profile=certificate_profile(leaf, email, issuer.label),
    )
