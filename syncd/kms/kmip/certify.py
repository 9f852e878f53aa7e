"""Issuing a leaf with KMIP Certify (Cosmian releases without Sign, ``kms.kmip.signing: certify``).

Cosmian's Certify takes the subject as CertificateAttributes and the extensions as an
OpenSSL-style extensions file with a ``[v3_ca]`` section (vendor attribute ``x509-extension``),
the same file its CLI's ``google key-pairs create --leaf-certificate-extensions`` reads. syncd
renders its own leaf profile (:func:`syncd.pki.issue.leaf_extensions`: the configured
extensions file or Google's S/MIME defaults, with the profile's CRL and AIA locations and the
key identifiers) as that file, so a certificate made by Certify carries what a certificate
signed with KMIP Sign would. The result is checked before it is used: issued by the issuer,
for the right key, naming the user.
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from syncd.errors import CertificateError
from syncd.kms.base import LeafRequest
from syncd.kms.kmip.transport import CertifyRequest, KmipTransport
from syncd.pki.chain import describe, issued_by
from syncd.pki.extensions import SECTION, LeafContext
from syncd.pki.issue import ExtensionList, leaf_extensions
from syncd.pki.profile import check_certifiable, san_addresses, subject_for

_USAGE_NAMES = {
    "digital_signature": "digitalSignature", "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment", "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement", "key_cert_sign": "keyCertSign", "crl_sign": "cRLSign",
}
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
CLOCK_SKEW = dt.timedelta(minutes=5)
_UNSAFE = re.compile(r"[,\s#$\\\"]")
"""Characters an item of an OpenSSL extensions line cannot carry as they are: the item
separator, comments, variable expansion, quoting."""


def _safe(value: str, extension: str) -> str:
    if not value or _UNSAFE.search(value):
        raise CertificateError(f"cannot pass {value!r} in {extension} to the KMS's Certify: an "
                               "extensions file item cannot hold , # $ \\ \" or spaces")
    return value


def _key_usage(usage: x509.KeyUsage) -> list[str]:
    names = [name for attribute, name in _USAGE_NAMES.items() if getattr(usage, attribute)]
    if usage.key_agreement:
        names += ["encipherOnly"] if usage.encipher_only else []
        names += ["decipherOnly"] if usage.decipher_only else []
    return names


def _general_name(name: x509.GeneralName, extension: str) -> str:
    if isinstance(name, x509.RFC822Name):
        return "email:" + _safe(name.value, extension)
    if isinstance(name, x509.DNSName):
        return "DNS:" + _safe(name.value, extension)
    if isinstance(name, x509.UniformResourceIdentifier):
        return "URI:" + _safe(name.value, extension)
    raise CertificateError(f"{extension}: a {type(name).__name__} cannot be written in an "
                           "extensions file for the KMS's Certify")


def _crl_points(points: x509.CRLDistributionPoints) -> list[str]:
    items = []
    for point in points:
        if point.full_name is None or point.reasons or point.crl_issuer:
            raise CertificateError("crlDistributionPoints: only plain URI points can be passed "
                                   "to the KMS's Certify")
        items += [_general_name(name, "crlDistributionPoints") for name in point.full_name]
    return items


def _access(info: x509.AuthorityInformationAccess) -> list[str]:
    methods = {AuthorityInformationAccessOID.CA_ISSUERS: "caIssuers",
               AuthorityInformationAccessOID.OCSP: "OCSP"}
    items = []
    for description in info:
        method = methods.get(description.access_method)
        if method is None:
            raise CertificateError(f"authorityInfoAccess: method "
                                   f"{description.access_method.dotted_string} is not supported")
        items.append(f"{method};" + _general_name(description.access_location,
                                                  "authorityInfoAccess"))
    return items


def _policies(policies: x509.CertificatePolicies) -> list[str]:
    if any(policy.policy_qualifiers for policy in policies):
        raise CertificateError("certificatePolicies: policy qualifiers cannot be passed to the "
                               "KMS's Certify; give plain OIDs")
    return [policy.policy_identifier.dotted_string for policy in policies]


def extension_line(extension: x509.ExtensionType, critical: bool) -> str:
    """One ``name=[critical,]value`` line of an OpenSSL extensions file."""
    name: str
    items: list[str]
    if isinstance(extension, x509.KeyUsage):
        name, items = "keyUsage", _key_usage(extension)
    elif isinstance(extension, x509.ExtendedKeyUsage):
        name = "extendedKeyUsage"
        items = [_EKU_NAMES.get(oid, oid.dotted_string) for oid in extension]
    elif isinstance(extension, x509.BasicConstraints):
        name = "basicConstraints"
        items = ["CA:TRUE" if extension.ca else "CA:FALSE"]
        if extension.path_length is not None:
            items.append(f"pathlen:{extension.path_length}")
    elif isinstance(extension, x509.SubjectAlternativeName):
        name = "subjectAltName"
        items = [_general_name(general, name) for general in extension]
    elif isinstance(extension, x509.CRLDistributionPoints):
        name, items = "crlDistributionPoints", _crl_points(extension)
    elif isinstance(extension, x509.AuthorityInformationAccess):
        name, items = "authorityInfoAccess", _access(extension)
    elif isinstance(extension, x509.SubjectKeyIdentifier):
        name, items = "subjectKeyIdentifier", ["hash"]
    elif isinstance(extension, x509.AuthorityKeyIdentifier):
        name = "authorityKeyIdentifier"
        items = ["keyid:always"]
        if extension.authority_cert_issuer:
            items.append("issuer:always")
    elif isinstance(extension, x509.CertificatePolicies):
        name, items = "certificatePolicies", _policies(extension)
    else:
        raise CertificateError(f"the extension {type(extension).__name__} cannot be passed to "
                               "the KMS's Certify")
    if not items:
        raise CertificateError(f"{name} is empty")
    return f"{name}={'critical,' if critical else ''}{','.join(items)}"


def render_extensions_conf(extensions: ExtensionList) -> str:
    """The ``[v3_ca]`` extensions file for ``extensions``. Key identifiers are written as
    ``hash`` / ``keyid:always``: the KMS computes them from the keys it holds."""
    lines = [f"[{SECTION}]"] + [extension_line(ext, critical) for ext, critical in extensions]
    return "\n".join(lines) + "\n"


def certify_request(leaf: LeafRequest, issuer_certificate_id: str | None = None) -> CertifyRequest:
    """What to ask Certify for ``leaf`` (its subject and extensions rendered from its profile)."""
    check_certifiable(leaf.email, leaf.aliases)
    ctx = LeafContext(leaf.email, leaf.public_key, leaf.issuer_certificate,
                      san_addresses(leaf.email, leaf.aliases)[1:])
    return CertifyRequest(
        public_key_id=leaf.public_key_id,
        issuer_private_key_id=leaf.issuer_private_key_id,
        issuer_certificate_id=issuer_certificate_id,
        subject=subject_for(leaf.email, leaf.profile.subject_template).rfc4514_string(),
        extensions_conf=render_extensions_conf(leaf_extensions(leaf.profile, ctx)),
        validity_days=leaf.profile.validity_days,
        label=leaf.label,
    )


def check_certified(cert: x509.Certificate, email: str,
                    subject_public_key: CertificatePublicKeyTypes,
                    issuer_cert: x509.Certificate, now: dt.datetime,
                    aliases: tuple[str, ...] = ()) -> None:
    """Raise CertificateError unless ``cert`` is the leaf asked for (naming ``aliases`` too)."""
    problems = []
    if not issued_by(cert, issuer_cert):
        problems.append(f"it is not signed by the issuer {describe(issuer_cert)}")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != subject_public_key.public_bytes(der, spki):
        problems.append("it certifies another public key")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        named = {value.lower() for value in names.get_values_for_type(x509.RFC822Name)}
        missing = [a for a in (email, *aliases) if a.lower() not in named]
        if missing:
            problems.append(f"its subjectAltName does not name {', '.join(missing)}")
    except x509.ExtensionNotFound:
        problems.append("it has no subjectAltName")
    # the KMS's clock starts the validity: allow it to run a little ahead of this host's
    if not cert.not_valid_before_utc - CLOCK_SKEW <= now <= cert.not_valid_after_utc:
        problems.append("it is not valid now")
    if problems:
        raise CertificateError(f"the certificate Certify made for {email}", problems)


def certify_leaf(transport: KmipTransport, leaf: LeafRequest) -> x509.Certificate:
    """The leaf certificate made inside the KMS by Certify, checked.

    Raises NotSupportedByServer when the KMS has no Certify, KMSRefusedError /
    KMSUnavailableError as the transport does, CertificateError when the result is not the
    certificate asked for."""
    der = transport.certify(certify_request(leaf))
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise CertificateError(f"{transport.describe()}: Certify for {leaf.email} returned no "
                               "X.509 certificate") from None
    check_certified(cert, leaf.email, leaf.public_key, leaf.issuer_certificate, leaf.now,
                    leaf.aliases)
    return cert
