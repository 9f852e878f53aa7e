"""The leaf certificate profile: subject template, hash, validity and extensions from config.

``subject_for`` fills an RFC 4514 template with a user's address; the template is parsed
before the address goes in, so an address such as ``a+b@example.com`` cannot change the name's
structure.

A common name is at most 64 characters (X.520 ub-common-name). When the address makes it
longer (``CN={email}`` with a long address), the common name falls back to the template filled
with the local part instead of the address, and failing that to its first 64 characters; the
subjectAltName carries the full address, and that is what Gmail and S/MIME clients match.

``check_certifiable`` refuses an address with characters outside ASCII (an internationalised
local part such as ``josé@``): an rfc822Name must be ASCII, the RFC 8398 alternative
(SmtpUTF8Mailbox) is not an address Gmail matches against a user's primary address, and Google
Workspace primary addresses are ASCII. The refusal is permanent: retrying cannot fix it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID

from syncd.config import CertificateConfig
from syncd.errors import ConfigError, UncertifiableAddressError
from syncd.pki.extensions import ExtensionRule, load_extensions_file

HashName = Literal["sha256", "sha384", "sha512"]

TEMPLATE_KEY = "certificate.subject_template"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SPECIAL = frozenset(',+"\\<>;=')
MAX_COMMON_NAME = 64
# Each placeholder stands as one private-use character while the template is parsed, so the
# parser sees the template's own structure and length, never the address's.
_TOKENS = {"email": "\ue000", "local_part": "\ue001", "domain": "\ue002"}


@dataclass(frozen=True)
class LeafProfile:
    """How syncd issues user certificates (see ``certificate`` in the configuration)."""

    subject_template: str = "CN={email}"
    hash: HashName = "sha256"
    validity_days: int = 365
    crl_distribution_points: tuple[str, ...] = ()
    aia_ca_issuers: tuple[str, ...] = ()
    aia_ocsp: tuple[str, ...] = ()
    extensions: tuple[ExtensionRule, ...] | None = None

    @classmethod
    def from_config(cls, cfg: CertificateConfig) -> LeafProfile:
        """The profile of the ``certificate`` section, reading its extensions file if any."""
        extensions = None
        if cfg.extensions_file is not None:
            extensions = load_extensions_file(cfg.extensions_file)
        profile = cls(
            subject_template=cfg.subject_template,
            hash=cfg.hash,
            validity_days=cfg.validity_days,
            crl_distribution_points=tuple(cfg.crl_distribution_points),
            aia_ca_issuers=tuple(cfg.aia_ca_issuers),
            aia_ocsp=tuple(cfg.aia_ocsp),
            extensions=extensions,
        )
        subject_for("user@example.com", profile.subject_template)
        return profile


def escape_rfc4514(value: str) -> str:
    """``value`` escaped for use as an attribute value in an RFC 4514 string."""
    out = []
    for index, char in enumerate(value):
        leading = index == 0 and char in "# "
        trailing = index == len(value) - 1 and char == " "
        if char in _SPECIAL or leading or trailing:
            out.append("\\" + char)
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _fields(email: str) -> dict[str, str]:
    local_part, _, domain = email.rpartition("@")
    if not local_part or not domain:
        raise ConfigError(TEMPLATE_KEY, f"{email!r} is not an email address")
    return {"email": email, "local_part": local_part, "domain": domain}


def check_certifiable(email: str, aliases: Sequence[str] = ()) -> None:
    """Raise UncertifiableAddressError (permanent) when ``email`` or one of its ``aliases``
    cannot be a certificate's rfc822Name: each must be ASCII (see the module docstring)."""
    for address in (email, *aliases):
        if address.isascii():
            continue
        local_part = address.rpartition("@")[0]
        part = "local part" if not local_part.isascii() else "domain"
        if address != email:
            raise UncertifiableAddressError(
                f"{email}: its alias {address} has an internationalised {part} (not ASCII), "
                "which an S/MIME certificate's rfc822Name cannot carry; remove the alias in the "
                "directory or set certificate.include_aliases: false"
            )
        raise UncertifiableAddressError(
            f"{email}: internationalised {part} (not ASCII); an S/MIME certificate names its "
            "user with an ASCII rfc822Name, and Gmail matches it to the user's primary address, "
            "which Google Workspace keeps ASCII. Give the user an ASCII primary address in the "
            "directory"
        )


def san_addresses(email: str, aliases: Sequence[str] = ()) -> tuple[str, ...]:
    """The rfc822Names of a leaf: the primary address first, then each alias once."""
    return tuple(dict.fromkeys((email, *(a for a in aliases if a.lower() != email.lower()))))


def _template_with_tokens(template: str) -> str:
    def token(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in _TOKENS:
            raise ConfigError(TEMPLATE_KEY, f"unknown placeholder {{{key}}}; use {{email}}, "
                                            "{local_part} or {domain}")
        return _TOKENS[key]

    return _PLACEHOLDER.sub(token, template)


def _fill(value: str, fields: dict[str, str]) -> str:
    for key, token in _TOKENS.items():
        value = value.replace(token, fields[key])
    return value


def fit_common_name(value: str, fields: dict[str, str]) -> str:
    """A common name from ``value`` (the template's, placeholders as tokens) of at most 64
    characters: the address, else the local part in its place, else the first 64 characters."""
    filled = _fill(value, fields)
    if len(filled) <= MAX_COMMON_NAME:
        return filled
    shorter = _fill(value, {**fields, "email": fields["local_part"]})
    return shorter if len(shorter) <= MAX_COMMON_NAME else shorter[:MAX_COMMON_NAME]


def _attribute(
    attribute: x509.NameAttribute[Any], fields: dict[str, str]
) -> x509.NameAttribute[Any]:
    value = attribute.value
    if not isinstance(value, str) or not any(token in value for token in _TOKENS.values()):
        return attribute
    if attribute.oid == NameOID.COMMON_NAME:
        return x509.NameAttribute(attribute.oid, fit_common_name(value, fields))
    return x509.NameAttribute(attribute.oid, _fill(value, fields))


def subject_for(email: str, template: str) -> x509.Name:
    """The subject name for ``email`` from an RFC 4514 ``template`` such as "CN={email},O=X"."""
    fields = _fields(email)
    text = _template_with_tokens(template)
    if not text.strip():
        raise ConfigError(TEMPLATE_KEY, "the subject template is empty")
    try:
        parsed = x509.Name.from_rfc4514_string(text)
        return x509.Name([
            x509.RelativeDistinguishedName([_attribute(a, fields) for a in rdn])
            for rdn in parsed.rdns
        ])
    except ValueError as exc:
        detail = str(exc) or "not attribute=value pairs separated by commas"
        raise ConfigError(TEMPLATE_KEY, f"{template!r} gives no valid RFC 4514 name for "
                                        f"{email} ({detail})") from exc


_CRL_ADVICE = (
    "Google requires a public HTTP CRL distribution point on the issuing intermediate, and "
    "leaves carry one in practice"
)


def crl_warnings(profile: LeafProfile, extensions_file: Path | None = None) -> list[str]:
    """Advice on the CRL distribution point the leaves will carry (``syncd config check``)."""
    if profile.extensions is not None:
        if any(rule.name == "crlDistributionPoints" for rule in profile.extensions):
            return []
        if not profile.crl_distribution_points:  # else leaves carry those (leaf_extensions)
            return [f"certificate.extensions_file: {extensions_file} has no "
                    "crlDistributionPoints and certificate.crl_distribution_points is empty; "
                    f"leaves are issued without a CRL distribution point ({_CRL_ADVICE})"]
    if not profile.crl_distribution_points:
        return ["certificate.crl_distribution_points: empty; leaves are issued without a CRL "
                f"distribution point ({_CRL_ADVICE}); set it, for example to "
                "[http://crl.example.com/issuing.crl]"]
    return [f"certificate.crl_distribution_points: {uri} is not an http:// URL; CRLs are "
            "fetched over plain HTTP" for uri in profile.crl_distribution_points
            if not uri.lower().startswith("http://")]

