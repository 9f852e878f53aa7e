"""Issue a user's S/MIME leaf certificate, signed by an issuer key that stays in the KMS.

cryptography's CertificateBuilder signs only with a private key in memory, so the certificate
is first drafted with a throwaway key of the issuer's key type (same signature algorithm, so
the same to-be-signed bytes), the TBS bytes are signed through ``sign`` (the KMS), and the
final DER is assembled from the draft's TBS and algorithm and the KMS signature. CRLs are
signed the same way (``syncd.pki.crl``, with ``draft_key``, ``HASHES`` and ``signed_der``).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from syncd.errors import CertificateError
from syncd.pki import der
from syncd.pki.chain import describe, issued_by
from syncd.pki.extensions import LeafContext, authority_key_identifier, build_extensions
from syncd.pki.profile import LeafProfile, check_certifiable, san_addresses, subject_for

Signer = Callable[[bytes], bytes]
ExtensionList = list[tuple[x509.ExtensionType, bool]]

BACKDATE = dt.timedelta(minutes=5)
SERIAL_BITS = 159
HASHES: dict[str, Callable[[], hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

DraftKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_draft_keys: dict[str, DraftKey] = {}
_draft_keys_lock = threading.Lock()


def draft_key(issuer_key: CertificatePublicKeyTypes) -> DraftKey:
    """A per-process throwaway key whose signatures use the same algorithm as the issuer's."""
    if isinstance(issuer_key, rsa.RSAPublicKey):
        kind = "rsa"
    elif isinstance(issuer_key, ec.EllipticCurvePublicKey):
        kind = "ec"
    else:
        raise CertificateError(f"issuer key type {type(issuer_key).__name__} is not supported; "
                               "use an RSA or EC issuing CA")
    with _draft_keys_lock:
        if kind not in _draft_keys:
            _draft_keys[kind] = (rsa.generate_private_key(65537, 2048) if kind == "rsa"
                                 else ec.generate_private_key(ec.SECP256R1()))
        return _draft_keys[kind]


def new_serial() -> int:
    """A random positive serial of at most 159 bits (20 DER bytes with the sign bit)."""
    serial = 0
    while serial == 0:
        serial = x509.random_serial_number()
    return serial


def _check_serial(serial: int) -> int:
    if not 0 < serial < 2**SERIAL_BITS:
        raise CertificateError(f"serial {serial} must be positive and at most {SERIAL_BITS} bits")
    return serial


def _key_usage(subject_key: CertificatePublicKeyTypes) -> x509.KeyUsage:
    is_ec = isinstance(subject_key, ec.EllipticCurvePublicKey)
    return x509.KeyUsage(
        digital_signature=True, content_commitment=True, key_encipherment=not is_ec,
        data_encipherment=False, key_agreement=is_ec, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )


def _crl_points(profile: LeafProfile) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([
        x509.DistributionPoint([x509.UniformResourceIdentifier(uri)], None, None, None)
        for uri in profile.crl_distribution_points
    ])


def _authority_access(profile: LeafProfile) -> x509.AuthorityInformationAccess:
    methods = [(AuthorityInformationAccessOID.CA_ISSUERS, uri) for uri in profile.aia_ca_issuers]
    methods += [(AuthorityInformationAccessOID.OCSP, uri) for uri in profile.aia_ocsp]
    return x509.AuthorityInformationAccess(
        [x509.AccessDescription(oid, x509.UniformResourceIdentifier(uri)) for oid, uri in methods]
    )


def _profile_locations(profile: LeafProfile) -> ExtensionList:
    found: ExtensionList = []
    if profile.crl_distribution_points:
        found.append((_crl_points(profile), False))
    if profile.aia_ca_issuers or profile.aia_ocsp:
        found.append((_authority_access(profile), False))
    return found


def default_extensions(profile: LeafProfile, ctx: LeafContext) -> ExtensionList:
    """Google's S/MIME end-entity profile for ``ctx.email`` (its aliases after it in the
    subjectAltName)."""
    return [
        (_key_usage(ctx.public_key), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
        (x509.SubjectAlternativeName(
            [x509.RFC822Name(address) for address in san_addresses(ctx.email, ctx.aliases)]
        ), False),
        (x509.BasicConstraints(ca=False, path_length=None), True),
        *_profile_locations(profile),
    ]


def leaf_extensions(profile: LeafProfile, ctx: LeafContext) -> ExtensionList:
    """The leaf's extensions: the extensions file's (or the defaults), plus SKI and AKI.

    The profile's CRL and AIA locations are added only when the file sets none of its own.
    """
    if profile.extensions is None:
        chosen = default_extensions(profile, ctx)
    else:
        chosen = build_extensions(profile.extensions, ctx)
        present = {type(ext) for ext, _ in chosen}
        chosen += [item for item in _profile_locations(profile) if type(item[0]) not in present]
    present = {type(ext) for ext, _ in chosen}
    if x509.SubjectKeyIdentifier not in present:
        chosen.append((x509.SubjectKeyIdentifier.from_public_key(ctx.public_key), False))
    if x509.AuthorityKeyIdentifier not in present:
        chosen.append((authority_key_identifier(ctx.issuer), False))
    return chosen


def _validity(now: dt.datetime, profile: LeafProfile, issuer_cert: x509.Certificate,
              email: str) -> tuple[dt.datetime, dt.datetime]:
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    not_before = now - BACKDATE
    not_after = min(now + dt.timedelta(days=profile.validity_days),
                    issuer_cert.not_valid_after_utc)
    if not_after <= now:
        raise CertificateError(f"cannot issue for {email}: the issuer {describe(issuer_cert)} "
                               f"expired on {issuer_cert.not_valid_after_utc.isoformat()}")
    return not_before, not_after


def signed_der(draft_der: bytes, signature: bytes) -> bytes:
    """A draft signed structure (a certificate or a CRL: TBS, algorithm, signature) with its
    signature replaced by ``signature``, made over the same TBS bytes with the same algorithm."""
    tbs, algorithm, _ = der.sequence_items(draft_der)
    return der.certificate(tbs, algorithm, signature)


def _assemble(draft: x509.Certificate, signature: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(
        signed_der(draft.public_bytes(serialization.Encoding.DER), signature)
    )


def issue_leaf(
    email: str,
    subject_public_key: CertificatePublicKeyTypes,
    issuer_cert: x509.Certificate,
    sign: Signer,
    profile: LeafProfile,
    now: dt.datetime,
    serial: int | None = None,
    *,
    aliases: Sequence[str] = (),
) -> x509.Certificate:
    """The leaf certificate for ``email``, its TBS bytes signed by ``sign`` (the KMS).

    ``aliases``, the user's other addresses, follow ``email`` in the subjectAltName.
    ``sign`` must sign with the issuer's private key: RSA PKCS#1 v1.5 or ECDSA (DER) with the
    profile's hash. Raises CertificateError if the result does not verify against the issuer,
    and UncertifiableAddressError (permanent) for an address no certificate can carry.
    """
    check_certifiable(email, aliases)
    not_before, not_after = _validity(now, profile, issuer_cert, email)
    ctx = LeafContext(email, subject_public_key, issuer_cert, san_addresses(email, aliases)[1:])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_for(email, profile.subject_template))
        .issuer_name(issuer_cert.subject)
        .public_key(subject_public_key)
        .serial_number(_check_serial(serial) if serial is not None else new_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for extension, critical in leaf_extensions(profile, ctx):
        builder = builder.add_extension(extension, critical)
    draft = builder.sign(draft_key(issuer_cert.public_key()), HASHES[profile.hash]())
    cert = _assemble(draft, sign(draft.tbs_certificate_bytes))
    if not issued_by(cert, issuer_cert):  # remembered: the upload check asks again
        raise CertificateError(
            f"the KMS signature on the certificate for {email} does not verify against the "
            f"issuer {describe(issuer_cert)}; check that the KMS key is that CA's key"
        )
    return cert
