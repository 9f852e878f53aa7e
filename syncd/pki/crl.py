"""Certificate revocation lists: building one for an issuing CA, signed by a key in the KMS.

The CRL is built like a leaf certificate (``syncd.pki.issue``): cryptography's
CertificateRevocationListBuilder drafts it signed by a throwaway key of the issuer's key type,
the draft's TBSCertList bytes are signed through ``sign`` (the KMS), and the final DER takes
the draft's TBS and algorithm with the KMS signature. The result is checked against the
issuer's public key before it is returned.

A CRL carries the CRL number (monotonic per issuer: the caller keeps it) and the issuer's key
identifier (RFC 5280 5.2.1-5.2.3), thisUpdate and nextUpdate, and for each revoked serial its
revocation date and reason code (none for ``unspecified``, as RFC 5280 5.3.1 advises).
Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from syncd.domain import USER_REVOCATION_REASONS
from syncd.errors import CertificateError
from syncd.pki.chain import describe
from syncd.pki.extensions import authority_key_identifier
from syncd.pki.issue import BACKDATE, HASHES, draft_key, signed_der

Signer = Callable[[bytes], bytes]

REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "certificateHold": x509.ReasonFlags.certificate_hold,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aACompromise": x509.ReasonFlags.aa_compromise,
}
"""RFC 5280 reason names (as stored in ``revocations.reason``) and their CRL reason codes."""

USER_REASONS = USER_REVOCATION_REASONS
"""The reasons ``syncd revoke`` takes (syncd.domain.USER_REVOCATION_REASONS)."""

MAX_CRL_NUMBER = 2**159 - 1  # at most 20 octets (RFC 5280 5.2.3)


@dataclass(frozen=True)
class RevokedSerial:
    """One entry of a CRL."""

    serial: int
    revoked_at: dt.datetime
    reason: str = "unspecified"


def reason_flag(name: str) -> x509.ReasonFlags:
    """The reason code for an RFC 5280 reason name; CertificateError listing the names."""
    try:
        return REASONS[name]
    except KeyError:
        raise CertificateError(
            f"unknown revocation reason {name!r}; use one of {', '.join(REASONS)}"
        ) from None


def serial_from_hex(serial_hex: str) -> int:
    """A serial recorded as lowercase hex (``key_pairs.serial_hex``) as an integer."""
    try:
        serial = int(serial_hex, 16)
    except ValueError:
        raise CertificateError(f"serial {serial_hex!r} is not hexadecimal") from None
    if serial <= 0:
        raise CertificateError(f"serial {serial_hex!r} must be positive")
    return serial


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _entry(item: RevokedSerial) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(item.serial)
        .revocation_date(_aware(item.revoked_at).replace(microsecond=0))
    )
    flag = reason_flag(item.reason)
    if flag is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()


def _check_crl_signer(issuer_cert: x509.Certificate) -> None:
    """Refuse an issuer whose keyUsage leaves out cRLSign: verifiers reject its CRLs."""
    try:
        usage = issuer_cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.crl_sign:
        raise CertificateError(
            f"the issuing CA {describe(issuer_cert)} may not sign CRLs (its keyUsage has no "
            "cRLSign), and verifiers refuse a CRL it signs; issue CRLs with a CA certificate "
            "whose keyUsage includes cRLSign"
        )


def build_crl(
    issuer_cert: x509.Certificate,
    sign: Signer,
    revoked: Iterable[RevokedSerial],
    *,
    number: int,
    now: dt.datetime,
    validity: dt.timedelta,
    hash_name: str = "sha256",
) -> x509.CertificateRevocationList:
    """The CRL of ``issuer_cert`` listing ``revoked``, its TBS bytes signed by ``sign``.

    thisUpdate is ``now`` less a few minutes (clocks differ), nextUpdate ``now + validity``.
    ``sign`` must sign with the issuer's private key (RSA PKCS#1 v1.5 or ECDSA, DER) with
    ``hash_name``. Raises CertificateError if the result does not verify against the issuer.
    """
    if not 0 < number <= MAX_CRL_NUMBER:
        raise CertificateError(f"CRL number {number} must be positive and at most 20 octets")
    if validity <= dt.timedelta(0):
        raise CertificateError(f"CRL validity {validity} must be positive")
    if hash_name not in HASHES:
        raise CertificateError(f"hash {hash_name!r} is not one of {', '.join(HASHES)}")
    _check_crl_signer(issuer_cert)
    now = _aware(now).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + validity)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(authority_key_identifier(issuer_cert), critical=False)
    )
    seen: set[int] = set()
    for item in sorted(revoked, key=lambda entry: entry.serial):
        if item.serial in seen:
            continue  # one entry per serial: the first reason recorded stands
        seen.add(item.serial)
        builder = builder.add_revoked_certificate(_entry(item))
    draft = builder.sign(draft_key(issuer_cert.public_key()), HASHES[hash_name]())
    data = signed_der(
        draft.public_bytes(serialization.Encoding.DER), sign(draft.tbs_certlist_bytes)
    )
    crl = x509.load_der_x509_crl(data)
    if not signed_by(crl, issuer_cert):
        raise CertificateError(
            f"the KMS signature on the CRL of {describe(issuer_cert)} does not verify against "
            "that issuer's certificate; check that the KMS key is that CA's key"
        )
    return crl


def signed_by(crl: x509.CertificateRevocationList, issuer_cert: x509.Certificate) -> bool:
    """True when ``issuer_cert`` names the CRL's issuer and its key verifies the signature."""
    key = issuer_cert.public_key()
    if crl.issuer != issuer_cert.subject or not isinstance(
        key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    ):
        return False
    return crl.is_signature_valid(key)


def encode_crl(crl: x509.CertificateRevocationList, fmt: str) -> bytes:
    """The CRL as DER or PEM (``-----BEGIN X509 CRL-----``)."""
    if fmt not in ("der", "pem"):
        raise CertificateError(f"CRL format {fmt!r} must be der or pem")
    encoding = serialization.Encoding.DER if fmt == "der" else serialization.Encoding.PEM
    return crl.public_bytes(encoding)


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL read from DER or PEM bytes; CertificateError when it is neither."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as error:
        raise CertificateError(f"not a readable CRL ({error})") from None


def crl_number(crl: x509.CertificateRevocationList) -> int | None:
    """The CRL number extension's value, None when the CRL has none."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None
