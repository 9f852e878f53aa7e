"""Manual, one-user Gmail CSE operations: what ``syncd google key-pairs ...`` and ``syncd google
identities ...`` do, the Cosmian CLI's google commands done the syncd way.

They act on Gmail directly, outside the pipeline and its state: nothing here creates tasks or
key pair rows. Every write holds the run lock (so no sync pass acts on the user meanwhile) and
is recorded in the audit log once Gmail has accepted it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from syncd.app.context import App
from syncd.credentials.credential import make_credential
from syncd.credentials.issuers import IssuingCA, load_issuer
from syncd.errors import CANotImportedError, CertificateError, ConfigError
from syncd.google.errors import GoogleAPIError
from syncd.google.gmail import GmailCSE, keypair_leaf
from syncd.kms.base import KeyManager, PrivateKeyFormat
from syncd.pki.chain import (
    describe,
    fingerprint,
    is_self_signed,
    issued_by,
    order_chain,
    pkcs7_pem,
)
from syncd.pki.extensions import load_extensions_file
from syncd.pki.pkcs12 import PrivateKey, key_matches_certificate, load_pkcs12
from syncd.pki.profile import LeafProfile, subject_for
from syncd.pki.validate import check_for_upload, kacls_violations

Source = Literal["issued", "pkcs12"]


# --- inputs ----------------------------------------------------------------------------------


def normalise_user(user: str) -> str:
    """The mailbox address as Gmail and the audit log see it (trimmed, lower case)."""
    address = user.strip().lower()
    local_part, _, domain = address.rpartition("@")
    if not local_part or not domain:
        raise ConfigError("USER", f"{user!r} is not an email address")
    return address


def leaf_profile(
    base: LeafProfile, *, subject_name: str | None, extensions_file: Path | None
) -> LeafProfile:
    """``base`` with this one certificate's subject name and/or extensions file instead."""
    profile = base
    if subject_name is not None:
        try:
            subject_for("user@example.com", subject_name)
        except ConfigError as error:
            raise ConfigError("--subject-name", error.problem) from None
        profile = dataclasses.replace(profile, subject_template=subject_name)
    if extensions_file is not None:
        profile = dataclasses.replace(profile, extensions=load_extensions_file(extensions_file))
    return profile


@dataclass(frozen=True)
class ExternalLeaf:
    """A leaf certificate issued elsewhere, its private key, and the chain to upload with it."""

    key: PrivateKey
    certificate: x509.Certificate
    intermediates: list[x509.Certificate]
    roots: list[x509.Certificate]


def _mismatched_leaf(data: bytes, password: bytes | None) -> x509.Certificate | None:
    """The end-entity certificate of a PKCS#12 file that its private key does not match.

    OpenSSL pairs a PKCS#12 key with the certificate holding its public key; a leaf that does
    not match is handed back among the "other" certificates, so load_pkcs12 only sees "no
    certificate". This finds it to say what is really wrong.
    """
    try:
        bundle = pkcs12.load_pkcs12(data, password)
    except (ValueError, TypeError):
        return None
    if bundle.key is None:
        return None
    certs = [item.certificate for item in bundle.additional_certs]
    if bundle.cert is not None:
        certs.append(bundle.cert.certificate)
    for cert in certs:
        if not _is_ca(cert) and not key_matches_certificate(bundle.key, cert):
            return cert
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def read_pkcs12_leaf(data: bytes, password: bytes | None, where: str) -> ExternalLeaf:
    """The leaf, its own private key (checked to match) and its chain from a PKCS#12 file.

    ``roots`` are the self-signed certificates the file carries: they stand in for the roots
    Google trusts when the chain is checked before upload (Gmail checks it again). A leaf the
    KACLS cannot use (an EC key, no keyUsage) is refused here, before anything is made.
    """
    try:
        key, certificate, others = load_pkcs12(data, password, where)
    except CertificateError:
        leaf = _mismatched_leaf(data, password)
        if leaf is not None:
            raise CertificateError(
                f"{where}: the private key does not match the certificate {describe(leaf)}"
            ) from None
        raise
    refused = kacls_violations(certificate)
    if refused:
        raise CertificateError(f"{where}: leaf refused", refused)
    path = order_chain(certificate, others)
    intermediates = [cert for cert in path[1:] if not is_self_signed(cert)]
    roots = [cert for cert in others if is_self_signed(cert)]
    return ExternalLeaf(key, certificate, intermediates, roots)


# --- key pairs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedKeyPair:
    keypair: dict[str, Any]
    """Gmail's CseKeyPair as created."""
    kms_private_key_id: str
    source: Source


def _kacls_uri(app: App) -> str:
    if not app.config.kacls.uri:
        raise ConfigError("kacls.uri", "required: Gmail needs it to reach the KACLS")
    return app.config.kacls.uri


def _optional_issuer(app: App) -> IssuingCA | None:
    try:
        return load_issuer(app.database.sessions, app.config.ca.label)
    except CANotImportedError:
        return None


def _external_chain(
    leaf: ExternalLeaf, issuer: IssuingCA | None
) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(intermediates, trusted roots) for the leaf: its own, else the imported CA's."""
    roots = list(leaf.roots)
    if issuer is not None and issuer.root is not None:
        roots.append(issuer.root)
    if leaf.intermediates or issuer is None:
        return leaf.intermediates, roots
    if issued_by(leaf.certificate, issuer.certificate):
        return issuer.intermediates, roots
    return [], roots


def _upload(
    gmail: GmailCSE,
    kms: KeyManager,
    user: str,
    key_id: str,
    pkcs7: str,
    kacls_uri: str,
    key_format: PrivateKeyFormat,
) -> dict[str, Any]:
    """Upload the key pair; on a refusal (not a lost answer) the KMS key is revoked."""
    try:
        kacls_data = kms.wrapped_private_key(key_id, key_format)
        return gmail.create_keypair(user, pkcs7, kacls_uri, kacls_data)
    except GoogleAPIError as error:
        if not error.outcome_unknown:
            kms.revoke(key_id, f"Gmail refused the key pair for {user}")
        raise


def create_keypair(
    app: App,
    user: str,
    now: datetime,
    *,
    subject_name: str | None = None,
    extensions_file: Path | None = None,
    rsa_bits: int | None = None,
    external: ExternalLeaf | None = None,
) -> CreatedKeyPair:
    """Create the key in the KMS, issue (or take ``external``) the leaf, validate, upload.

    With ``external`` the leaf's own private key is imported into the KMS and wrapped; the
    subject, extensions and key size options do not apply to it.
    """
    user = normalise_user(user)
    kacls_uri = _kacls_uri(app)
    config = app.config
    label = f"manual:{user}:{now:%Y%m%dT%H%M%S%f}"
    with app.run_lock():
        keys = app.keyring(need_wrapping_key=True)
        kms = keys.configured  # the new key is made (or imported) in the configured backend
        gmail = GmailCSE(config.google)
        if external is None:
            profile = leaf_profile(
                LeafProfile.from_config(config.certificate),
                subject_name=subject_name,
                extensions_file=extensions_file,
            )
            issuer = load_issuer(app.database.sessions, config.ca.label)
            credential = make_credential(
                user,
                kms,
                issuer,
                profile,
                bits=rsa_bits or config.certificate.key_bits,
                label=label,
                now=now,
                wrap=None,
                issuer_kms=keys.holding(issuer.kms_backend),
            )
            certificate, pkcs7, key_id = (
                credential.certificate,
                credential.pkcs7,
                credential.key.private_key_id,
            )
            source: Source = "issued"
        else:
            intermediates, roots = _external_chain(external, _optional_issuer(app))
            check_for_upload(external.certificate, intermediates, user, roots, now)
            certificate = external.certificate
            pkcs7 = pkcs7_pem([certificate, *intermediates])
            key_id = kms.import_private_key(label, external.key).private_key_id
            source = "pkcs12"
        key_format = config.kacls.private_key_format
        keypair = _upload(gmail, kms, user, key_id, pkcs7, kacls_uri, key_format)
        app.audit(
            "google.keypair.created",
            email=user,
            key_pair_id=str(keypair.get("keyPairId")),
            kms_key_id=key_id,
            kms_backend=kms.name,
            source=source,
            key_format=key_format,
            serial=format(certificate.serial_number, "x"),
            sha256=fingerprint(certificate),
        )
    return CreatedKeyPair(keypair, key_id, source)


def list_keypairs(app: App, user: str) -> list[dict[str, Any]]:
    return GmailCSE(app.config.google).list_keypairs(normalise_user(user))


def get_keypair(app: App, user: str, key_pair_id: str) -> dict[str, Any]:
    return GmailCSE(app.config.google).get_keypair(normalise_user(user), key_pair_id)


def set_keypair_enabled(app: App, user: str, key_pair_id: str, enabled: bool) -> dict[str, Any]:
    """Enable or disable one of the user's key pairs."""
    user = normalise_user(user)
    gmail = GmailCSE(app.config.google)
    with app.run_lock():
        if enabled:
            keypair = gmail.enable_keypair(user, key_pair_id)
        else:
            keypair = gmail.disable_keypair(user, key_pair_id)
        action = "google.keypair.enabled" if enabled else "google.keypair.disabled"
        app.audit(action, email=user, key_pair_id=key_pair_id)
    return keypair


def obliterate_keypair(app: App, user: str, key_pair_id: str) -> None:
    """Destroy a key pair disabled for more than 30 days (Gmail refuses otherwise)."""
    user = normalise_user(user)
    gmail = GmailCSE(app.config.google)
    with app.run_lock():
        gmail.obliterate_keypair(user, key_pair_id)
        app.audit("google.keypair.obliterated", email=user, key_pair_id=key_pair_id)


# --- identities ------------------------------------------------------------------------------


def insert_identity(app: App, user: str, key_pair_id: str) -> dict[str, Any]:
    """Make the key pair the user's CSE identity."""
    user = normalise_user(user)
    gmail = GmailCSE(app.config.google)
    with app.run_lock():
        identity = gmail.create_identity(user, key_pair_id)
        app.audit("google.identity.inserted", email=user, key_pair_id=key_pair_id)
    return identity


def patch_identity(app: App, user: str, key_pair_id: str) -> dict[str, Any]:
    """Point the user's identity at another key pair."""
    user = normalise_user(user)
    gmail = GmailCSE(app.config.google)
    with app.run_lock():
        identity = gmail.patch_identity(user, key_pair_id)
        app.audit("google.identity.patched", email=user, key_pair_id=key_pair_id)
    return identity


def delete_identity(app: App, user: str) -> None:
    user = normalise_user(user)
    gmail = GmailCSE(app.config.google)
    with app.run_lock():
        gmail.delete_identity(user)
        app.audit("google.identity.deleted", email=user)


def list_identities(app: App, user: str) -> list[dict[str, Any]]:
    return GmailCSE(app.config.google).list_identities(normalise_user(user))


def get_identity(app: App, user: str) -> dict[str, Any]:
    return GmailCSE(app.config.google).get_identity(normalise_user(user))


# --- what the commands print -----------------------------------------------------------------


def describe_keypair(user: str, keypair: dict[str, Any]) -> dict[str, Any]:
    """A Gmail CseKeyPair in syncd's stable shape (docs/cli.md); kaclsData is left out."""
    leaf = keypair_leaf(keypair)
    return {
        "user": normalise_user(user),
        "key_pair_id": keypair.get("keyPairId"),
        "enablement_state": keypair.get("enablementState"),
        "subject_email_addresses": list(keypair.get("subjectEmailAddresses") or []),
        "disable_time": keypair.get("disableTime"),
        "subject": leaf.subject.rfc4514_string() if leaf else None,
        "issuer": leaf.issuer.rfc4514_string() if leaf else None,
        "serial": format(leaf.serial_number, "x") if leaf else None,
        "sha256_fingerprint": fingerprint(leaf) if leaf else None,
        "not_before": leaf.not_valid_before_utc if leaf else None,
        "not_after": leaf.not_valid_after_utc if leaf else None,
        "pem": keypair.get("pem"),
    }


def describe_identity(user: str, identity: dict[str, Any]) -> dict[str, Any]:
    """A Gmail CseIdentity in syncd's stable shape (docs/cli.md)."""
    pairs = identity.get("signAndEncryptKeyPairs") or {}
    return {
        "user": normalise_user(user),
        "email_address": identity.get("emailAddress"),
        "primary_key_pair_id": identity.get("primaryKeyPairId"),
        "signing_key_pair_id": pairs.get("signingKeyPairId"),
        "encryption_key_pair_id": pairs.get("encryptionKeyPairId"),
    }
