"""The leaf certificate profile: subject template, hash, validity and extensions from config.

``subject_for`` fills an RFC 4514 template with a user's address, escaping each value so an
address such as ``a+b@example.com`` cannot change the name's structure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509

from syncd.config import CertificateConfig
from syncd.errors import ConfigError
from syncd.pki.extensions import ExtensionRule, load_extensions_file

HashName = Literal["sha256", "sha384", "sha512"]

TEMPLATE_KEY = "certificate.subject_template"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SPECIAL = frozenset(',+"\\<>;=')


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


def subject_for(email: str, template: str) -> x509.Name:
    """The subject name for ``email`` from an RFC 4514 ``template`` such as "CN={email},O=X"."""
    fields = _fields(email)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in fields:
            raise ConfigError(TEMPLATE_KEY, f"unknown placeholder {{{key}}}; use {{email}}, "
                                            "{local_part} or {domain}")
        return escape_rfc4514(fields[key])

    text = _PLACEHOLDER.sub(fill, template)
    if not text.strip():
        raise ConfigError(TEMPLATE_KEY, "the subject template is empty")
    try:
        return x509.Name.from_rfc4514_string(text)
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
        return [f"certificate.extensions_file: {extensions_file} has no crlDistributionPoints; "
                f"leaves are issued without a CRL distribution point ({_CRL_ADVICE})"]
    if not profile.crl_distribution_points:
        return ["certificate.crl_distribution_points: empty; leaves are issued without a CRL "
                f"distribution point ({_CRL_ADVICE}); set it, for example to "
                "[http://crl.example.com/issuing.crl]"]
    return [f"certificate.crl_distribution_points: {uri} is not an http:// URL; CRLs are "
            "fetched over plain HTTP" for uri in profile.crl_distribution_points
            if not uri.lower().startswith("http://")]

