"""The sandbox's own judgement of an uploaded S/MIME chain, as Gmail and OpenSSL would judge it.

Written from Google's published rules for S/MIME certificates (support.google.com/a/answer/
7300887 and 13297070) and OpenSSL's S/MIME verification (``openssl verify -purpose
smimesign``: chain building by name, key identifier and signature, CA flags, path lengths,
critical extensions, the S/MIME purpose), with ``cryptography`` directly. It deliberately
imports nothing from ``syncd.pki``: the sandbox exists to catch syncd's certificate mistakes,
so it must not share syncd's validator.

Each rule is a small function returning the sentences it finds broken; every sentence names
the certificate ("leaf", "intermediate CN=...") and the rule, and the upload is refused with
all of them in one 400 INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import pairwise

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

RSA_SIZES = frozenset({2048, 3072, 4096})
CURVES = frozenset({"secp256r1", "secp384r1"})
HASHES = frozenset({"sha256", "sha384", "sha512"})
MAX_SERIAL_OCTETS = 20
MAX_DEPTH = 8

# Extensions OpenSSL's verifier understands; any other marked critical fails verification
# ("unhandled critical extension").
KNOWN_CRITICAL = frozenset({
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.ISSUER_ALTERNATIVE_NAME,
    ExtensionOID.NAME_CONSTRAINTS, ExtensionOID.POLICY_CONSTRAINTS,
    ExtensionOID.CERTIFICATE_POLICIES, ExtensionOID.POLICY_MAPPINGS,
    ExtensionOID.INHIBIT_ANY_POLICY, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_DISTRIBUTION_POINTS,
    ExtensionOID.FRESHEST_CRL, ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    ExtensionOID.SUBJECT_INFORMATION_ACCESS,
})

Rule = Callable[[str, x509.Certificate, datetime], list[str]]


# --- reading a certificate ------------------------------------------------------------------


def name_of(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _ext(
    cert: x509.Certificate, oid: x509.ObjectIdentifier
) -> x509.Extension[x509.ExtensionType] | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return None


def _basic(cert: x509.Certificate) -> x509.BasicConstraints | None:
    found = _ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    if found is None or not isinstance(found.value, x509.BasicConstraints):
        return None
    return found.value


def _usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    found = _ext(cert, ExtensionOID.KEY_USAGE)
    return found.value if found is not None and isinstance(found.value, x509.KeyUsage) else None


def _has(ku: x509.KeyUsage, flag: str) -> bool:
    try:
        return bool(getattr(ku, flag))
    except ValueError:  # encipher_only/decipher_only without keyAgreement
        return False


def is_ca(cert: x509.Certificate) -> bool:
    basic = _basic(cert)
    return basic is not None and basic.ca


@lru_cache(maxsize=1024)
def signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """``parent`` is named as ``child``'s issuer and its key verifies ``child``'s signature.

    Remembered: certificates hash by their DER, and the same intermediate-to-root link is
    checked on every upload.
    """
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def self_signed(cert: x509.Certificate) -> bool:
    return signed_by(cert, cert)


def _key_ids_disagree(child: x509.Certificate, parent: x509.Certificate) -> bool:
    aki = _ext(child, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    ski = _ext(parent, ExtensionOID.SUBJECT_KEY_IDENTIFIER)
    if aki is None or ski is None:
        return False
    assert isinstance(aki.value, x509.AuthorityKeyIdentifier)
    assert isinstance(ski.value, x509.SubjectKeyIdentifier)
    wanted = aki.value.key_identifier
    return wanted is not None and wanted != ski.value.key_identifier


# --- rules for every certificate of the chain -----------------------------------------------


def _readable_extensions(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    try:
        extensions = cert.extensions
    except x509.DuplicateExtension as exc:
        return [f"{role}: extension {exc.oid.dotted_string} appears twice (extensions must not "
                "contradict each other)"]
    except ValueError as exc:
        return [f"{role}: extensions cannot be parsed ({exc}): they are malformed or "
                "contradict each other"]
    return [
        f"{role}: unhandled critical extension {e.oid.dotted_string}"
        for e in extensions
        if e.critical and e.oid not in KNOWN_CRITICAL
    ]


def _version(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if cert.version is not x509.Version.v3:
        return [f"{role}: X.509 {cert.version.name} certificate; S/MIME needs v3 extensions"]
    return []


def _serial(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    serial = cert.serial_number
    if serial <= 0:
        return [f"{role}: serial number {serial} is not positive"]
    octets = serial.bit_length() // 8 + 1  # DER INTEGER: a leading 0 bit for the sign
    if octets > MAX_SERIAL_OCTETS:
        return [f"{role}: serial number takes {octets} bytes; at most {MAX_SERIAL_OCTETS}"]
    return []


def _signature_hash(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is not None and algorithm.name in HASHES:
        return []
    used = (algorithm.name.upper() if algorithm is not None
            else cert.signature_algorithm_oid.dotted_string)
    return [f"{role}: signature uses {used}; the signature hash must be SHA-256, -384 or -512"]


def _key(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return [f"{role}: public key cannot be read; keys must be RSA or EC P-256/P-384"]
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size in RSA_SIZES:
            return []
        return [f"{role}: RSA key of {key.key_size} bits; keys must be RSA 2048, 3072 or 4096"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name in CURVES:
            return []
        return [f"{role}: EC key on {key.curve.name}; EC keys must be on P-256 or P-384"]
    return [f"{role}: {type(key).__name__.removesuffix('PublicKey')} key; keys must be RSA "
            "or EC P-256/P-384"]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _validity(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if now < cert.not_valid_before_utc:
        return [f"{role}: not valid before {_stamp(cert.not_valid_before_utc)}"]
    if now > cert.not_valid_after_utc:
        return [f"{role}: expired at {_stamp(cert.not_valid_after_utc)}"]
    return []


def _empty_subject(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if len(cert.subject) > 0:
        return []
    san = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if san is not None and san.critical:
        return []
    return [f"{role}: empty subject without a critical subjectAltName (RFC 5280)"]


NO_EXTENSIONS_NEEDED: tuple[Rule, ...] = (_version, _serial, _signature_hash, _key, _validity)
EVERY_CERT: tuple[Rule, ...] = (_readable_extensions, *NO_EXTENSIONS_NEEDED, _empty_subject)


# --- rules for the intermediates --------------------------------------------------------------


def _ca_flag(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    if is_ca(cert):
        return []
    return [f"{role}: basicConstraints CA:TRUE is missing; only a CA may issue certificates"]


def _ca_key_usage(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    ku = _usage(cert)
    if ku is None:
        return [f"{role}: no keyUsage; an issuing CA needs keyCertSign"]
    if not _has(ku, "key_cert_sign"):
        return [f"{role}: keyUsage lacks keyCertSign; an issuing CA needs it"]
    return []


def _ca_purpose(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    """OpenSSL's S/MIME purpose applies to the CAs too: an extendedKeyUsage, when present,
    must allow emailProtection (``openssl verify -purpose smimesign`` fails otherwise)."""
    found = _ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if found is None or not isinstance(found.value, x509.ExtendedKeyUsage):
        return []
    if ExtendedKeyUsageOID.EMAIL_PROTECTION in list(found.value):
        return []
    return [f"{role}: extendedKeyUsage lacks emailProtection, so the certificates it issues "
            "cannot be used for S/MIME"]


INTERMEDIATE: tuple[Rule, ...] = (*EVERY_CERT, _ca_flag, _ca_key_usage, _ca_purpose)


# --- rules for the leaf -----------------------------------------------------------------------


def _leaf_not_ca(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    found = []
    basic = _basic(cert)
    if basic is not None and basic.ca:
        found.append(f"{role}: basicConstraints CA:TRUE; the user's certificate must not be a CA")
    if basic is not None and not basic.ca and basic.path_length is not None:
        found.append(f"{role}: basicConstraints CA:FALSE with a pathlen (extensions contradict "
                     "each other)")
    ku = _usage(cert)
    for flag, label in (("key_cert_sign", "keyCertSign"), ("crl_sign", "cRLSign")):
        if ku is not None and _has(ku, flag):
            found.append(f"{role}: keyUsage {label} on a certificate that is not a CA")
    return found


def _leaf_eku(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    found = _ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    if found is None:
        return [f"{role}: no extendedKeyUsage; emailProtection is required"]
    assert isinstance(found.value, x509.ExtendedKeyUsage)
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in list(found.value):
        return [f"{role}: extendedKeyUsage lacks emailProtection (not usable for S/MIME)"]
    return []


def _leaf_key_usage(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    ku = _usage(cert)
    if ku is None:
        return [f"{role}: no keyUsage; digitalSignature is required"]
    found = []
    if not _has(ku, "digital_signature"):
        found.append(f"{role}: keyUsage lacks digitalSignature (needed to sign mail)")
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return found
    if isinstance(key, rsa.RSAPublicKey):
        if not _has(ku, "key_encipherment"):
            found.append(f"{role}: keyUsage lacks keyEncipherment (needed to decrypt mail "
                         "with an RSA key)")
        if _has(ku, "key_agreement"):
            found.append(f"{role}: keyUsage keyAgreement contradicts its RSA key")
    if isinstance(key, ec.EllipticCurvePublicKey) and _has(ku, "key_encipherment"):
        found.append(f"{role}: keyUsage keyEncipherment contradicts its EC key")
    return found


def _leaf_address(email: str) -> Rule:
    def rule(role: str, cert: x509.Certificate, now: datetime) -> list[str]:
        san = _ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        if san is None:
            return [f"{role}: no subjectAltName; it must hold the email {email}"]
        assert isinstance(san.value, x509.SubjectAlternativeName)
        emails = san.value.get_values_for_type(x509.RFC822Name)
        if any(found.lower() == email.lower() for found in emails):
            return []
        named = ", ".join(emails) or "no email address"
        return [f"{role}: subjectAltName names {named}, not the user {email}"]

    return rule


LEAF: tuple[Rule, ...] = (*EVERY_CERT, _leaf_not_ca, _leaf_eku, _leaf_key_usage)


# --- the chain --------------------------------------------------------------------------------


def _run(rules: Iterable[Rule], role: str, cert: x509.Certificate, now: datetime) -> list[str]:
    """The rules' findings; when the extensions cannot be read, that and the rules that do not
    read extensions (a list of every absent extension would only confuse)."""
    unreadable = _readable_extensions(role, cert, now)
    if unreadable and any(s.startswith(f"{role}: extensions cannot") for s in unreadable):
        rules = [r for r in rules if r in NO_EXTENSIONS_NEEDED]
    chosen = [r for r in rules if r is not _readable_extensions]
    return [*unreadable, *(sentence for rule in chosen for sentence in rule(role, cert, now))]


def find_leaf(certs: Sequence[x509.Certificate]) -> x509.Certificate:
    """The certificate that issued none of the others (the first one when that is unclear)."""
    ends = [c for c in certs if not any(o is not c and signed_by(o, c) for o in certs)]
    return ends[0] if ends else certs[0]


def build_path(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> tuple[list[x509.Certificate], x509.Certificate | None]:
    """The leaf and the intermediates above it (from ``pool``) up to a trusted root.

    Returns the path (leaf first, root not included) and the trusted root reached, if any.
    """
    path = [leaf]
    left = [c for c in pool if c != leaf]
    while len(path) <= MAX_DEPTH:
        current = path[-1]
        root = next((r for r in roots if signed_by(current, r)), None)
        if root is not None:
            return path, root
        if current in roots or self_signed(current):
            return path, None
        parent = next((c for c in left if signed_by(current, c)), None)
        if parent is None:
            return path, None
        path.append(parent)
        left.remove(parent)
    return path, None


def _why_unlinked(top: x509.Certificate, candidates: Sequence[x509.Certificate]) -> str:
    named = [c for c in candidates if c.subject == top.issuer]
    if named:
        return (f"chain: the signature of {name_of(top)} does not verify with the key of "
                f"{name_of(named[0])}")
    return (f"chain: no certificate found for the issuer {top.issuer.rfc4514_string()} of "
            f"{name_of(top)}; the chain must end at a trusted root")


def _path_rules(path: Sequence[x509.Certificate], root: x509.Certificate) -> list[str]:
    found = []
    linked = [*path, root]
    for child, parent in pairwise(linked):
        if _key_ids_disagree(child, parent):
            found.append(f"chain: authorityKeyIdentifier of {name_of(child)} differs from the "
                         f"subjectKeyIdentifier of {name_of(parent)}")
    for index, cert in enumerate(linked[1:], start=1):
        basic = _basic(cert)
        below = index - 1  # CA certificates between this one and the leaf
        if basic is not None and basic.path_length is not None and below > basic.path_length:
            found.append(f"chain: pathlen {basic.path_length} of {name_of(cert)} allows fewer "
                         f"CA certificates below it than the {below} given")
    return found


def chain_problems(
    certs: Sequence[x509.Certificate],
    email: str,
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> list[str]:
    """Every rule the uploaded chain breaks for the user ``email``, one sentence each."""
    leaf = find_leaf(certs)
    found = _run((*LEAF, _leaf_address(email)), "leaf", leaf, now)
    if self_signed(leaf) or leaf in roots:
        return [*found, "chain: the leaf is self-signed; it must be issued by an intermediate CA "
                        "under a trusted root"]
    path, root = build_path(leaf, certs, roots)
    if root is None:
        top = path[-1]
        if self_signed(top) or top in roots:
            found.append(f"chain: ends at {name_of(top)}, which is not a trusted root")
        else:
            found.append(_why_unlinked(top, [*certs, *roots]))
    elif len(path) == 1:
        found.append(f"chain: the root {name_of(root)} issued the leaf directly; at least one "
                     "intermediate CA is required")
    for cert in path[1:]:
        found.extend(_run(INTERMEDIATE, f"intermediate {name_of(cert)}", cert, now))
    if root is not None:
        found.extend(_validity(f"root {name_of(root)}", root, now))
        found.extend(_path_rules(path, root))
    return found
