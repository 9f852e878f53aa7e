"""Google's S/MIME certificate rules as pure checks that return violation sentences.

Each rule is a small function of a certificate (and the time, or the user's email) returning
the sentences it finds broken, prefixed with the role of the certificate ("leaf", "chain",
"issuer", "intermediate <subject>"). The public checks run a table of rules; nothing here does
I/O, so the sandbox can use the same code to emulate Google.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from syncd.errors import CertificateError
from syncd.pki.chain import describe, find_issuer, is_self_signed

ACCEPTED_HASHES = frozenset({"sha256", "sha384", "sha512"})
LEAF_RSA_BITS = frozenset({2048, 3072, 4096})
ACCEPTED_CURVES = frozenset({"secp256r1", "secp384r1"})
MAX_SERIAL_BYTES = 20

_HASH_LABELS = {"sha1": "SHA-1", "md5": "MD5", "sha224": "SHA-224"}
_NO_HASH_ALGORITHMS = {
    SignatureAlgorithmOID.ED25519: "Ed25519",
    SignatureAlgorithmOID.ED448: "Ed448",
}

ExtT = TypeVar("ExtT", bound=x509.ExtensionType)
CertRule = Callable[[str, x509.Certificate, datetime], list[str]]


# --- helpers ---------------------------------------------------------------------------------


def _utc(now: datetime) -> datetime:
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _extension(cert: x509.Certificate, kind: type[ExtT]) -> x509.Extension[ExtT] | None:
    """The extension of that type, or None when absent or when the extensions are unreadable."""
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension):
        return None


def _usage(ku: x509.KeyUsage, name: str) -> bool:
    try:
        return bool(getattr(ku, name))
    except ValueError:  # encipher_only / decipher_only are undefined without key_agreement
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _extension(cert, x509.BasicConstraints)
    return bc is not None and bc.value.ca


# --- rules for any certificate ---------------------------------------------------------------


def _extensions_readable(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    try:
        cert.extensions  # noqa: B018 - parsing is the check
    except x509.DuplicateExtension as exc:
        return [f"{role}: extension {exc.oid.dotted_string} appears more than once"]
    except ValueError as exc:
        return [f"{role}: extensions cannot be parsed ({exc})"]
    return []


def _serial(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    serial = cert.serial_number
    if serial <= 0:
        return [f"{role}: serial number {serial} is not positive"]
    size = (serial.bit_length() + 8) // 8  # DER INTEGER content, with its sign bit
    if size > MAX_SERIAL_BYTES:
        return [f"{role}: serial number is {size} bytes long; Google accepts at most 20"]
    return []


def _unaccepted_hash(cert: x509.Certificate) -> str | None:
    """How the signature's hash is named in messages, or None when Google accepts it."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return f"an unsupported algorithm ({cert.signature_algorithm_oid.dotted_string})"
    if algorithm is None:
        oid = cert.signature_algorithm_oid
        return f"{_NO_HASH_ALGORITHMS.get(oid, oid.dotted_string)} (no separate hash)"
    if algorithm.name in ACCEPTED_HASHES:
        return None
    return _HASH_LABELS.get(algorithm.name, algorithm.name.upper())


def _hash(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    label = _unaccepted_hash(cert)
    if label is None:
        return []
    return [f"{role}: signed with {label}; Google accepts SHA-256, -384, -512"]


def _validity(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if now > cert.not_valid_after_utc:
        return [f"{role}: expired on {_stamp(cert.not_valid_after_utc)}"]
    if now < cert.not_valid_before_utc:
        return [f"{role}: not valid before {_stamp(cert.not_valid_before_utc)}"]
    return []


def _key_violation(role: str, cert: x509.Certificate, rsa_ok: Callable[[int], bool],
                   accepted: str) -> list[str]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if rsa_ok(key.key_size):
            return []
        return [f"{role}: RSA key of {key.key_size} bits; Google accepts {accepted}"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in ACCEPTED_CURVES:
            return []
        return [f"{role}: EC key on curve {key.curve.name}; Google accepts P-256 or P-384"]
    return [f"{role}: {type(key).__name__} key; Google accepts RSA or EC P-256/P-384 keys"]


def _leaf_key(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    return _key_violation(role, cert, lambda bits: bits in LEAF_RSA_BITS, "2048, 3072 or 4096")


def _ca_key(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    return _key_violation(role, cert, lambda bits: bits >= 2048, "2048 bits or more")


COMMON_RULES: tuple[CertRule, ...] = (_extensions_readable, _serial, _hash, _validity)


# --- rules for the leaf ----------------------------------------------------------------------


def _leaf_not_ca(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if _is_ca(cert):
        return [f"{role}: basicConstraints CA:TRUE on an end-entity certificate"]
    return []


def _leaf_no_cert_sign(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    ku = _extension(cert, x509.KeyUsage)
    found = []
    if ku is not None and _usage(ku.value, "key_cert_sign"):
        found.append(f"{role}: keyUsage has keyCertSign; an end-entity certificate must not "
                     "sign certificates")
    if ku is not None and _usage(ku.value, "crl_sign"):
        found.append(f"{role}: keyUsage has cRLSign; an end-entity certificate must not sign CRLs")
    return found


def _leaf_key_usage(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    ku = _extension(cert, x509.KeyUsage)
    if ku is None:
        return []
    found = []
    if not _usage(ku.value, "digital_signature"):
        found.append(f"{role}: keyUsage lacks digitalSignature, needed to sign mail")
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and not _usage(ku.value, "key_encipherment"):
        found.append(f"{role}: keyUsage lacks keyEncipherment, needed to decrypt mail with RSA")
    if isinstance(key, ec.EllipticCurvePublicKey) and not _usage(ku.value, "key_agreement"):
        found.append(f"{role}: keyUsage lacks keyAgreement, needed to decrypt mail with EC")
    return found


def _leaf_email_protection(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return [f"{role}: no extendedKeyUsage extension; Google requires emailProtection"]
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku.value:
        return [f"{role}: extendedKeyUsage lacks emailProtection"]
    return []


def _leaf_contradictions(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    found = []
    ku = _extension(cert, x509.KeyUsage)
    key = cert.public_key()
    is_ec = isinstance(key, ec.EllipticCurvePublicKey)
    if ku is not None and is_ec and _usage(ku.value, "key_encipherment"):
        found.append(f"{role}: keyUsage keyEncipherment contradicts its EC key "
                     "(EC keys use keyAgreement)")
    if ku is not None and isinstance(key, rsa.RSAPublicKey) and _usage(ku.value, "key_agreement"):
        found.append(f"{role}: keyUsage keyAgreement contradicts its RSA key")
    bc = _extension(cert, x509.BasicConstraints)
    if bc is not None and not bc.value.ca and bc.value.path_length is not None:
        found.append(f"{role}: basicConstraints sets a pathlen with CA:FALSE")
    san = _extension(cert, x509.SubjectAlternativeName)
    if len(cert.subject) == 0 and (san is None or not san.critical):
        found.append(f"{role}: empty subject needs a critical subjectAltName")
    return found


def _san_email_rule(email: str) -> CertRule:
    def rule(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
        san = _extension(cert, x509.SubjectAlternativeName)
        if san is None:
            return [f"{role}: no subjectAltName extension; expected email {email}"]
        emails = san.value.get_values_for_type(x509.RFC822Name)
        if any(found.casefold() == email.casefold() for found in emails):
            return []
        if not emails:
            return [f"{role}: subjectAltName has no email address; expected {email}"]
        if len(emails) == 1:
            return [f"{role}: subjectAltName email is {emails[0]}, expected {email}"]
        return [f"{role}: subjectAltName emails are {', '.join(emails)}, expected {email}"]

    return rule


LEAF_RULES: tuple[CertRule, ...] = (
    *COMMON_RULES,
    _leaf_key,
    _leaf_not_ca,
    _leaf_no_cert_sign,
    _leaf_key_usage,
    _leaf_email_protection,
    _leaf_contradictions,
)


# --- rules for certification authorities ------------------------------------------------------


def _ca_flag(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if not _is_ca(cert):
        return [f"{role}: not a CA (basicConstraints CA:TRUE missing)"]
    return []


def _ca_cert_sign(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    ku = _extension(cert, x509.KeyUsage)
    if ku is None or not _usage(ku.value, "key_cert_sign"):
        return [f"{role}: keyUsage lacks keyCertSign"]
    return []


CA_RULES: tuple[CertRule, ...] = (*COMMON_RULES, _ca_key, _ca_flag, _ca_cert_sign)


def _ca_flag_critical(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    bc = _extension(cert, x509.BasicConstraints)
    if bc is not None and bc.value.ca and not bc.critical:
        return [f"{role}: basicConstraints is not marked critical; RFC 5280 requires it on a CA "
                "and OpenSSL's strict verification (-x509_strict) refuses the chain"]
    return []


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    if oid == ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE:
        return "anyExtendedKeyUsage"
    name = str(getattr(oid, "_name", ""))
    return oid.dotted_string if name in ("", "Unknown OID") else name


def _ca_email_protection(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None or ExtendedKeyUsageOID.EMAIL_PROTECTION in eku.value:
        return []
    names = ", ".join(_oid_name(oid) for oid in eku.value)
    return [f"{role}: extendedKeyUsage ({names}) lacks emailProtection; OpenSSL refuses every "
            "leaf it issues for S/MIME (verify -purpose smimesign, cms -verify)"]


ISSUER_RULES: tuple[CertRule, ...] = (*CA_RULES, _ca_flag_critical, _ca_email_protection)
"""What a CA must be to be imported as an issuer (or to stand above one): Google's rules, and
what OpenSSL needs to verify the S/MIME leaves it issues."""


def _run(rules: Sequence[CertRule], role: str, cert: x509.Certificate,
         now: datetime) -> list[str]:
    return [sentence for rule in rules for sentence in rule(role, cert, now)]


# --- linking --------------------------------------------------------------------------------


def _link_failure(child: x509.Certificate, pool: Sequence[x509.Certificate], label: str) -> str:
    """Why no certificate of ``pool`` issues ``child``."""
    named = [c for c in pool if c.subject == child.issuer]
    weak = _unaccepted_hash(child)
    if named and weak is not None:
        return (f"chain: signature of {label} {describe(child)} cannot be checked against "
                f"{describe(named[0])}: it is signed with {weak}")
    if named:
        return (f"chain: signature of {label} {describe(child)} does not verify against "
                f"{describe(named[0])}")
    return (f"chain: no issuer found for {label} {describe(child)} "
            f"(issuer {child.issuer.rfc4514_string()})")


def _key_id_mismatch(child: x509.Certificate, parent: x509.Certificate) -> list[str]:
    aki = _extension(child, x509.AuthorityKeyIdentifier)
    ski = _extension(parent, x509.SubjectKeyIdentifier)
    if aki is None or ski is None or aki.value.key_identifier is None:
        return []
    if aki.value.key_identifier != ski.value.digest:
        return [f"chain: authorityKeyIdentifier of {describe(child)} does not match the "
                f"subjectKeyIdentifier of {describe(parent)}"]
    return []


def _path_length(path: Sequence[x509.Certificate]) -> list[str]:
    """pathLenConstraint of each CA against the CAs below it (path[0] is the leaf)."""
    found = []
    for index, cert in enumerate(path[1:], start=1):
        bc = _extension(cert, x509.BasicConstraints)
        below = index - 1
        if bc is not None and bc.value.path_length is not None and below > bc.value.path_length:
            found.append(f"chain: {describe(cert)} has pathlen {bc.value.path_length} but "
                         f"{below} CA certificate(s) below it")
    return found


def _walk(start: x509.Certificate, pool: list[x509.Certificate],
          roots: Sequence[x509.Certificate]) -> tuple[list[x509.Certificate],
                                                      x509.Certificate | None]:
    """The path from ``start`` up through ``pool`` and the trusted root reached, if any."""
    path = [start]
    current = start
    while True:
        root = find_issuer(current, roots) if roots else None
        if root is not None:
            return path, root
        if is_self_signed(current):
            return path, None
        parent = find_issuer(current, pool)
        if parent is None:
            return path, None
        path.append(parent)
        pool.remove(parent)
        current = parent


# --- public checks --------------------------------------------------------------------------


def leaf_violations(leaf: x509.Certificate, email: str, now: datetime) -> list[str]:
    """Every rule of Google's S/MIME profile the leaf certificate for ``email`` breaks."""
    rules = (*LEAF_RULES, _san_email_rule(email))
    return _run(rules, "leaf", leaf, _utc(now))


def chain_violations(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trusted_roots: Sequence[x509.Certificate],
    now: datetime,
) -> list[str]:
    """Whether the leaf links by signature through ``intermediates`` to a trusted root.

    Google needs at least one intermediate: a root must not issue the leaf directly. With no
    trusted roots, only the linkage among the given certificates is checked.
    """
    now = _utc(now)
    if is_self_signed(leaf):
        return ["chain: the leaf is self-signed; Google requires a chain to a trusted root"]
    pool = [c for c in intermediates if c != leaf]
    path, root = _walk(leaf, pool, trusted_roots)
    found: list[str] = []
    top = path[-1]
    direct_root = root if root is not None and len(path) == 1 and is_self_signed(root) else None
    if direct_root is None and len(path) >= 2 and is_self_signed(path[1]):
        direct_root = path[1]
    if direct_root is not None:
        found.append(f"chain: the root {describe(direct_root)} issues the leaf directly; "
                     "Google requires at least one intermediate")
    elif trusted_roots and root is None:
        if is_self_signed(top):
            found.append(f"chain: ends at {describe(top)}, which is not a trusted root")
        else:
            label = "leaf" if top is leaf else "intermediate"
            found.append(_link_failure(top, [*pool, *trusted_roots], label))
    elif not trusted_roots and len(path) == 1:
        found.append(_link_failure(leaf, pool, "leaf") if pool else
                     "chain: no intermediate certificate given; Google requires at least one")
    for stray in pool:
        if not is_self_signed(stray) and (len(path) > 1 or not trusted_roots):
            found.append(f"chain: {describe(stray)} is not on the leaf's chain")
    for cert in path[1:]:
        if direct_root is not None and cert is direct_root:
            continue
        found.extend(_run(CA_RULES, f"intermediate {describe(cert)}", cert, now))
    for child, parent in pairwise([*path, *([root] if root is not None else [])]):
        found.extend(_key_id_mismatch(child, parent))
    found.extend(_path_length(path))
    return found


def issuer_violations(
    issuer_cert: x509.Certificate, chain_above: Sequence[x509.Certificate], now: datetime
) -> list[str]:
    """Whether a CA certificate may be imported as the issuer of user certificates."""
    now = _utc(now)
    found = _run(ISSUER_RULES, "issuer", issuer_cert, now)
    if is_self_signed(issuer_cert):
        found.append(f"issuer: {describe(issuer_cert)} is a self-signed root; roots must not "
                     "issue end-entity certificates, import an intermediate instead")
        return found
    pool = [c for c in chain_above if c != issuer_cert]
    if not pool:
        return found
    path, _ = _walk(issuer_cert, pool, ())
    if len(path) == 1:
        found.append(_link_failure(issuer_cert, pool, "issuer").replace("chain:", "issuer chain:"))
    for stray in pool:
        found.append(f"issuer chain: {describe(stray)} does not link to the issuer")
    for cert in path[1:]:
        found.extend(_run(ISSUER_RULES, f"issuer chain {describe(cert)}", cert, now))
    for child, parent in pairwise(path):
        found.extend(_key_id_mismatch(child, parent))
    return found


def issuer_warnings(issuer_cert: x509.Certificate) -> list[str]:
    """Advice about an issuing CA that Google does not enforce at upload time."""
    found = []
    crl = _extension(issuer_cert, x509.CRLDistributionPoints)
    uris = [
        name.value
        for point in (crl.value if crl is not None else [])
        for name in (point.full_name or [])
        if isinstance(name, x509.UniformResourceIdentifier)
    ]
    if not uris:
        found.append("issuer: no CRL distribution point; Google expects a public HTTP CRL "
                     "for the CA that issues users")
    found.extend(f"issuer: CRL distribution point {uri} is not an http:// URL"
                 for uri in uris if not uri.lower().startswith("http://"))
    bc = _extension(issuer_cert, x509.BasicConstraints)
    if bc is not None and bc.value.ca and bc.value.path_length != 0:
        shown = "absent" if bc.value.path_length is None else str(bc.value.path_length)
        found.append(f"issuer: pathLenConstraint is {shown}; 0 is recommended for a CA that "
                     "issues users")
    ku = _extension(issuer_cert, x509.KeyUsage)
    if ku is not None and not ku.critical:
        found.append("issuer: keyUsage is not marked critical; RFC 5280 recommends it (OpenSSL "
                     "and Google accept it)")
    if _extension(issuer_cert, x509.SubjectKeyIdentifier) is None:
        found.append("issuer: no subjectKeyIdentifier; leaf authorityKeyIdentifiers will be "
                     "computed from its public key")
    return found


def kacls_violations(leaf: x509.Certificate) -> list[str]:
    """What the KACLS needs of a leaf beyond Google's rules, one sentence per problem.

    Gmail hands the private key to the KACLS to decrypt and sign, and the KACLS does both
    with RSA only: an EC leaf uploads but can never be used. A leaf without keyUsage allows
    every use (RFC 5280), which is not what an S/MIME key pair must state.
    """
    found = []
    key = leaf.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        found.append(f"leaf: EC key on curve {key.curve.name}; the KACLS decrypts and signs "
                     "with RSA keys only: use an RSA 2048, 3072 or 4096 key")
    elif not isinstance(key, rsa.RSAPublicKey):
        found.append(f"leaf: {type(key).__name__} key; the KACLS decrypts and signs with RSA "
                     "keys only")
    if _extension(leaf, x509.KeyUsage) is None:
        found.append("leaf: no keyUsage extension; an S/MIME leaf needs one with "
                     "digitalSignature and keyEncipherment")
    return found


def check_for_upload(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    email: str,
    trusted_roots: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    """Raise CertificateError listing every violation if Google would reject the chain."""
    found = leaf_violations(leaf, email, now)
    found.extend(kacls_violations(leaf))
    found.extend(chain_violations(leaf, intermediates, trusted_roots, now))
    if found:
        raise CertificateError(f"certificate for {email} rejected", found)
