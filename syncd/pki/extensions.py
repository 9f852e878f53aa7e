"""OpenSSL-style extensions files: the ``[v3_ca]`` section turned into certificate extensions.

The format is the one Cosmian's CLI takes as ``--leaf-certificate-extensions``. Parsing checks
every line up front (an error names ``<file>:<line>``); values that depend on the certificate
being issued (``email:copy``, ``subjectKeyIdentifier=hash``, ``authorityKeyIdentifier``) are
resolved per certificate from a :class:`LeafContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from syncd.errors import ConfigError

SECTION = "v3_ca"


@dataclass(frozen=True)
class LeafContext:
    """What a leaf's extensions may depend on."""

    email: str
    public_key: CertificatePublicKeyTypes
    issuer: x509.Certificate
    aliases: tuple[str, ...] = ()
    """The user's other addresses, after ``email`` in the subjectAltName (``email:copy``)."""


Builder = Callable[[LeafContext], x509.ExtensionType]


@dataclass(frozen=True)
class ExtensionRule:
    """One extension line: its OpenSSL name, criticality, and how to build its value."""

    name: str
    critical: bool
    build: Builder
    where: str


class _Invalid(Exception):
    """A line's value is wrong; carries the problem, the caller adds file and line."""


# --- value parsers: each takes the value text (after "critical,") and returns a Builder ------


def _items(value: str) -> list[str]:
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise _Invalid(f"empty item in {value!r}")
    return items


def _fixed(extension: x509.ExtensionType) -> Builder:
    return lambda ctx: extension


_KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "keyCertSign": "key_cert_sign",
    "cRLSign": "crl_sign",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}


def _key_usage(value: str) -> Builder:
    flags = dict.fromkeys(set(_KEY_USAGES.values()), False)
    for item in _items(value):
        if item not in _KEY_USAGES:
            raise _Invalid(f"unknown keyUsage {item!r}; use {', '.join(_KEY_USAGES)}")
        flags[_KEY_USAGES[item]] = True
    try:
        return _fixed(x509.KeyUsage(**flags))
    except ValueError as exc:
        raise _Invalid(str(exc)) from exc


_EXTENDED_USAGES = {
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSPSigning": ExtendedKeyUsageOID.OCSP_SIGNING,
    "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
}


def _oid(text: str) -> x509.ObjectIdentifier:
    try:
        return x509.ObjectIdentifier(text)
    except ValueError as exc:
        raise _Invalid(f"{text!r} is not a known name or a dotted OID") from exc


def _extended_key_usage(value: str) -> Builder:
    usages = [_EXTENDED_USAGES.get(item) or _oid(item) for item in _items(value)]
    return _fixed(x509.ExtendedKeyUsage(usages))


def _flag(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise _Invalid(f"CA must be TRUE or FALSE, not {text!r}")
    return lowered == "true"


def _basic_constraints(value: str) -> Builder:
    ca: bool | None = None
    path_length: int | None = None
    for item in _items(value):
        key, _, setting = item.partition(":")
        if key.upper() == "CA":
            ca = _flag(setting)
        elif key.lower() == "pathlen" and setting.isdigit():
            path_length = int(setting)
        else:
            raise _Invalid(f"unknown basicConstraints item {item!r}; use CA:TRUE|FALSE, pathlen:N")
    if ca is None:
        raise _Invalid("basicConstraints needs CA:TRUE or CA:FALSE")
    if path_length is not None and not ca:
        raise _Invalid("pathlen is only allowed with CA:TRUE")
    return _fixed(x509.BasicConstraints(ca=ca, path_length=path_length))


def _general_name(item: str) -> Callable[[LeafContext], x509.GeneralName]:
    kind, sep, text = item.partition(":")
    if not sep or not text:
        raise _Invalid(f"{item!r} is not a name of the form email:, DNS: or URI:")
    if kind == "email" and text == "copy":
        return lambda ctx: x509.RFC822Name(ctx.email)
    makers: dict[str, Callable[[str], x509.GeneralName]] = {
        "email": x509.RFC822Name,
        "DNS": x509.DNSName,
        "URI": x509.UniformResourceIdentifier,
    }
    if kind not in makers:
        raise _Invalid(f"unsupported name type {kind!r}; use email:, DNS: or URI:")
    name = makers[kind](text)
    return lambda ctx: name


def _subject_alt_name(value: str) -> Builder:
    items = _items(value)
    makers = [_general_name(item) for item in items]

    def build(ctx: LeafContext) -> x509.SubjectAlternativeName:
        names = [make(ctx) for make in makers]
        if "email:copy" in items:  # the user's aliases follow the copied address
            present = {str(n.value).lower() for n in names if isinstance(n, x509.RFC822Name)}
            names += [x509.RFC822Name(a) for a in ctx.aliases if a.lower() not in present]
        return x509.SubjectAlternativeName(names)

    return build


def _uri(item: str) -> x509.UniformResourceIdentifier:
    kind, sep, text = item.partition(":")
    if kind != "URI" or not sep or not text:
        raise _Invalid(f"{item!r} is not of the form URI:<url>")
    return x509.UniformResourceIdentifier(text)


def _crl_distribution_points(value: str) -> Builder:
    points = [x509.DistributionPoint([_uri(item)], None, None, None) for item in _items(value)]
    return _fixed(x509.CRLDistributionPoints(points))


_ACCESS_METHODS = {
    "caIssuers": AuthorityInformationAccessOID.CA_ISSUERS,
    "OCSP": AuthorityInformationAccessOID.OCSP,
}


def _authority_info_access(value: str) -> Builder:
    descriptions = []
    for item in _items(value):
        method, sep, location = item.partition(";")
        if not sep or method.strip() not in _ACCESS_METHODS:
            raise _Invalid(f"{item!r} is not of the form caIssuers;URI:<url> or OCSP;URI:<url>")
        oid = _ACCESS_METHODS[method.strip()]
        descriptions.append(x509.AccessDescription(oid, _uri(location.strip())))
    return _fixed(x509.AuthorityInformationAccess(descriptions))


def _subject_key_identifier(value: str) -> Builder:
    if value.strip() != "hash":
        raise _Invalid(f"subjectKeyIdentifier must be 'hash', not {value!r}")
    return lambda ctx: x509.SubjectKeyIdentifier.from_public_key(ctx.public_key)


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The issuer's own subjectKeyIdentifier as a keyid, or one computed from its key."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _with_issuer_name(ctx: LeafContext) -> x509.AuthorityKeyIdentifier:
    keyid = authority_key_identifier(ctx.issuer).key_identifier
    return x509.AuthorityKeyIdentifier(
        keyid, [x509.DirectoryName(ctx.issuer.issuer)], ctx.issuer.serial_number
    )


def _authority_key_identifier(value: str) -> Builder:
    parts = {item.partition(":")[0] for item in _items(value)}
    if not parts <= {"keyid", "issuer"}:
        raise _Invalid(f"authorityKeyIdentifier takes keyid and/or issuer, not {value!r}")
    if "issuer" in parts:
        return _with_issuer_name
    return lambda ctx: authority_key_identifier(ctx.issuer)


def _certificate_policies(value: str) -> Builder:
    items = _items(value)
    if any(item.startswith("@") or item == "ia5org" for item in items):
        raise _Invalid("policy sections (@name) are not supported; give plain dotted OIDs")
    policies = [x509.PolicyInformation(_oid(item), None) for item in items]
    return _fixed(x509.CertificatePolicies(policies))


PARSERS: dict[str, Callable[[str], Builder]] = {
    "keyUsage": _key_usage,
    "extendedKeyUsage": _extended_key_usage,
    "basicConstraints": _basic_constraints,
    "subjectAltName": _subject_alt_name,
    "crlDistributionPoints": _crl_distribution_points,
    "authorityInfoAccess": _authority_info_access,
    "subjectKeyIdentifier": _subject_key_identifier,
    "authorityKeyIdentifier": _authority_key_identifier,
    "certificatePolicies": _certificate_policies,
}


# --- the file --------------------------------------------------------------------------------


def _section_header(line: str) -> str | None:
    if line.startswith("[") and line.endswith("]"):
        return line[1:-1].strip()
    return None


def _parse_line(line: str, where: str) -> ExtensionRule:
    name, sep, value = line.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ConfigError(where, f"expected name=value, got {line!r}")
    if name not in PARSERS:
        raise ConfigError(where, f"unknown extension {name!r}; supported: {', '.join(PARSERS)}")
    critical = False
    head, comma, rest = value.partition(",")
    if head.strip() == "critical":
        critical, value = True, rest.strip() if comma else ""
    if not value:
        raise ConfigError(where, f"{name} has no value")
    try:
        return ExtensionRule(name, critical, PARSERS[name](value), where)
    except _Invalid as exc:
        raise ConfigError(where, f"{name}: {exc}") from None


def parse_extensions_text(text: str, source: str) -> tuple[ExtensionRule, ...]:
    """The rules of the ``[v3_ca]`` section of ``text``; ``source`` names it in errors."""
    rules: list[ExtensionRule] = []
    section: str | None = None
    seen_section = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        header = _section_header(line)
        where = f"{source}:{number}"
        if header is not None:
            section = header
            seen_section = seen_section or header == SECTION
            continue
        if section != SECTION:
            continue
        rule = _parse_line(line, where)
        if any(existing.name == rule.name for existing in rules):
            raise ConfigError(where, f"{rule.name} is given twice")
        rules.append(rule)
    if not seen_section:
        raise ConfigError(source, f"no [{SECTION}] section")
    return tuple(rules)


def load_extensions_file(path: Path) -> tuple[ExtensionRule, ...]:
    """Read and parse an extensions file (see :func:`parse_extensions_text`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the extensions file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), "the extensions file is not UTF-8 text") from exc
    return parse_extensions_text(text, str(path))


def build_extensions(
    rules: tuple[ExtensionRule, ...], ctx: LeafContext
) -> list[tuple[x509.ExtensionType, bool]]:
    """Each rule's extension for this leaf, with its criticality."""
    return [(rule.build(ctx), rule.critical) for rule in rules]
