"""Pure helpers of the LDAP source: DN comparison, filters, and attribute values.

Nothing here talks to a server, so every rule (RFC 4514 DN escapes, RFC 4515 filter escapes,
Active Directory's objectGUID byte order and userAccountControl bit, the in-chain matching
rule) is tested on values alone.
"""

from __future__ import annotations

import re
import sys
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

from ldap3.utils.conv import escape_filter_chars

from syncd.directory.base import normalise_email

IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"
"""Active Directory's LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups."""
ACCOUNTDISABLE = 0x0002
"""userAccountControl bit of a disabled Active Directory account."""
AD_USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
"""Active Directory's user accounts: contacts (objectClass contact, also a person) and
computer accounts (objectCategory computer, also a user) are left out."""
ACCOUNT_NEVER_EXPIRES = (0, 0x7FFFFFFFFFFFFFFF)
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
AD_PARTITION_REFERRALS = ("dc=domaindnszones,", "dc=forestdnszones,", "cn=configuration,")
"""The DNS and configuration partitions a search from an AD domain root refers to: they hold
no user accounts, so those continuation references are not a partial read."""

_DN_SPECIAL = set('\\,+"<>;=#')


def escape_filter_value(value: str) -> str:
    """``value`` escaped for use inside an RFC 4515 filter (``*``, ``(``, ``)``, ``\\``, NUL)."""
    return str(escape_filter_chars(value))


def and_filters(*filters: str) -> str:
    """The conjunction of filters (each already parenthesised); one filter stays as it is."""
    present = [f for f in filters if f]
    if len(present) <= 1:
        return present[0] if present else ""
    return "(&" + "".join(present) + ")"


def group_member_filter(
    group_dns: Sequence[tuple[str, bool]], primary_group_ids: Sequence[int] = ()
) -> str:
    """Active Directory: users who are members of any of ``(dn, nested)``, as one filter.

    A nested group uses the in-chain matching rule, so the server expands nesting (and
    handles loops) itself; a direct group compares memberOf. DNs are filter-escaped. Users
    whose primary group is one of the groups (``primaryGroupID``, which memberOf never shows)
    are matched by ``primary_group_ids``.
    """
    parts = [
        f"(memberOf:{IN_CHAIN_RULE}:={escape_filter_value(dn)})"
        if nested
        else f"(memberOf={escape_filter_value(dn)})"
        for dn, nested in group_dns
    ]
    parts += [f"(primaryGroupID={rid})" for rid in dict.fromkeys(primary_group_ids)]
    return parts[0] if len(parts) == 1 else "(|" + "".join(parts) + ")"


def _split_unescaped(text: str, separators: str) -> list[str]:
    """Split on separators that are neither backslash-escaped nor inside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        if char in separators and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def _unescape_value(raw: str) -> str:
    """An attribute value of a DN with RFC 4514 escapes (``\\,`` and ``\\2C``) undone."""
    value = raw.strip(" ")
    if raw.endswith("\\ ") and not value.endswith("\\ "):
        value += " "  # an escaped trailing space is part of the value
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    if "\\" not in value:
        return value
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            pair = value[index + 1 : index + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                index += 3
                continue
            out += value[index + 1].encode()
            index += 2
            continue
        out += char.encode()
        index += 1
    return out.decode("utf-8", errors="replace")


def _escape_value(value: str) -> str:
    escaped = "".join("\\" + c if c in _DN_SPECIAL else c for c in value)
    if escaped.startswith(" "):
        escaped = "\\" + escaped
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return escaped


ATTRIBUTE_OIDS = {
    "2.5.4.3": "cn",
    "0.9.2342.19200300.100.1.1": "uid",
    "2.5.4.11": "ou",
    "2.5.4.10": "o",
    "0.9.2342.19200300.100.1.25": "dc",
    "2.5.4.6": "c",
    "2.5.4.7": "l",
    "2.5.4.8": "st",
    "2.5.4.9": "street",
    "2.5.4.4": "sn",
    "2.5.4.42": "givenname",
    "1.2.840.113549.1.9.1": "email",
}
"""Naming attributes' OIDs (RFC 4519, 4524, 2985): ``2.5.4.3=x`` is ``cn=x``, as for the server."""

_UNIQUE_MEMBER_UID = re.compile(r"#'[01]*'B$")
_SPACES = re.compile(" {2,}")


def strip_unique_member_uid(value: str) -> str:
    """A uniqueMember value (RFC 4517 nameAndOptionalUID) without its ``#'0101'B`` UID."""
    return _UNIQUE_MEMBER_UID.sub("", value)


def _attribute_type(kind: str) -> str:
    """An attribute type as the server compares it: case-insensitive, OIDs as names."""
    name = kind.strip().lower()
    if name.startswith("oid."):
        name = name[4:]
    return ATTRIBUTE_OIDS.get(name, name)


def _fold(value: str) -> str:
    """A value as the naming attributes' matching rules compare it (caseIgnoreMatch with
    RFC 4518 preparation, approximated): NFKC, case folded, inner runs of spaces as one."""
    if not value.isascii():
        value = unicodedata.normalize("NFKC", value).casefold()
    else:
        value = value.lower()
    return _SPACES.sub(" ", value) if "  " in value else value

def parent_dn(dn: str) -> str | None:
    """The DN of the entry above ``dn`` (after its first unescaped comma); None at the top."""
    if "\\" not in dn:  # no escapes (the common case): the first comma is the one
        _, comma, rest = dn.partition(",")
        return (sys.intern(rest.strip()) or None) if comma else None
    escaped = False
    for index, char in enumerate(dn):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            return sys.intern(dn[index + 1 :].strip()) or None  # one string per OU
    return None



def normalise_dn(dn: str) -> str:
    """A canonical form of ``dn`` for comparing two spellings of the same entry, as the server
    matches them.

    Attribute types are case-insensitive, and the common naming OIDs (``2.5.4.3``, with or
    without ``OID.``) stand for their names; spaces around separators are dropped; escapes are
    decoded (``\\2C`` and ``\\,`` are the same comma); values are compared after Unicode
    normalisation (NFKC) and case folding, with inner runs of spaces as one (the naming
    attributes of people and groups, cn, uid, ou, dc, are case-insensitive strings); the AVAs
    of a multi-valued RDN are sorted.
    """
    plain = (
        dn.isascii()
        and not any(c in dn for c in '\\"+;<>#')
        and dn.count("=") == dn.count(",") + 1
    )
    if plain:  # the common case, kept fast for large directories
        return ",".join(
            f"{_attribute_type(kind)}={_fold(value.strip())}"
            for kind, _, value in (rdn.partition("=") for rdn in dn.split(","))
        )
    rdns = []
    for rdn in _split_unescaped(dn, ",;"):
        avas = []
        for ava in _split_unescaped(rdn, "+"):
            kind, _, value = ava.partition("=")
            folded = _fold(_unescape_value(value))
            avas.append(f"{_attribute_type(kind)}={_escape_value(folded)}")
        rdns.append("+".join(sorted(avas)))
    return ",".join(rdns)


def directory_suffix(dn: str) -> str:
    """The naming context a DN most likely lives in: its trailing ``dc=`` RDNs (``dc=example,
    dc=org``), or its last RDN (``o=Example``) when it has none."""
    rdns = _split_unescaped(dn, ",")
    suffix: list[str] = []
    for rdn in reversed(rdns):
        if _attribute_type(rdn.partition("=")[0]) != "dc":
            break
        suffix.insert(0, rdn.strip())
    return ",".join(suffix) if suffix else rdns[-1].strip()


def guid_string(raw: bytes) -> str:
    """Active Directory objectGUID (16 bytes, first three fields little-endian) as text.

    The same form Windows shows (``Get-ADUser``), lower-case and without braces.
    """
    if len(raw) != 16:
        raise ValueError(f"objectGUID must be 16 bytes, not {len(raw)}")
    return str(uuid.UUID(bytes_le=raw))


def uac_disabled(raw: bytes) -> bool:
    """True when the ACCOUNTDISABLE bit of a userAccountControl value is set."""
    try:
        flags = int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"userAccountControl is not a number: {raw!r}") from None
    return bool(flags & ACCOUNTDISABLE)


def decode_text(raw: bytes, attribute: str) -> str:
    """An LDAP string value (UTF-8 on the wire)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{attribute} is not UTF-8 text") from None


def choose_email(values: Sequence[str], preferred_domains: Sequence[str] = ()) -> str | None:
    """The one address syncd uses when the email attribute has several values.

    Deterministic, whatever order the server stores them in: usable addresses before
    unusable ones; then an address whose domain is listed in ``preferred_domains``
    (``directory.ldap.mail_domains``; the first listed domain first); then the lowest address
    in lower-case code-point order. None when there is no non-empty value.
    """
    ranks = {domain.strip().lower(): rank for rank, domain in enumerate(preferred_domains)}

    def key(value: str) -> tuple[bool, int, str, str]:
        address = normalise_email(value)
        domain = address.rsplit("@", 1)[1] if address else ""
        return (address is None, ranks.get(domain, len(ranks)), value.lower(), value)

    present = [value.strip() for value in values if value.strip()]
    if len(present) <= 1:  # the common case: nothing to choose
        return present[0] if present else None
    return min(present, key=key)


_ADDRESS_TYPE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*):(.*)$", re.DOTALL)


def alias_values(values: Sequence[str]) -> list[str]:
    """The addresses among an aliases attribute's values, in order.

    Active Directory's proxyAddresses prefixes each value with its type: ``SMTP:`` (the
    primary) and ``smtp:`` values are addresses, without the prefix; other types (``X500:``,
    ``SIP:``, ``x400:``...) are not email addresses and are left out. A value without a type
    prefix is taken as it is.
    """
    found: list[str] = []
    for value in values:
        text = value.strip()
        typed = _ADDRESS_TYPE.match(text)
        if typed is not None and "@" not in typed.group(1):
            if typed.group(1).lower() != "smtp":
                continue
            text = typed.group(2).strip()
        if text:
            found.append(text)
    return found


def account_expired(raw: bytes, now: datetime) -> bool:
    """Active Directory accountExpires (100-nanosecond intervals since 1601-01-01 UTC): True
    when that moment has passed. 0 and 0x7FFFFFFFFFFFFFFF mean the account never expires."""
    try:
        ticks = int(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"accountExpires is not a number: {raw!r}") from None
    if ticks in ACCOUNT_NEVER_EXPIRES or ticks < 0:
        return False
    return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10) <= now


def sid_rid(raw: bytes) -> int:
    """The relative identifier (last sub-authority) of a binary objectSid: for a group, the
    primaryGroupID its primary members carry."""
    if len(raw) < 12 or raw[0] != 1 or len(raw) != 8 + 4 * raw[1] or raw[1] == 0:
        raise ValueError(f"objectSid is not a SID: {raw.hex()}")
    return int.from_bytes(raw[-4:], "little")


def ad_partition_referral(url: str) -> bool:
    """True for a continuation reference to AD's DomainDnsZones, ForestDnsZones or
    Configuration partition (``ldap://ForestDnsZones.corp.example/DC=ForestDnsZones,...``)."""
    dn = unquote(urlsplit(url).path.lstrip("/")).lower().replace(" ", "")
    return dn.startswith(AD_PARTITION_REFERRALS)


def primary_group_id(attributes: Mapping[str, Sequence[bytes]]) -> int | None:
    """The primaryGroupID of a group's primary members: its primaryGroupToken when the server
    sent it, else the RID of its objectSid; None when it has neither."""
    by_name = {key.lower(): values for key, values in attributes.items()}
    token = by_name.get("primarygrouptoken") or []
    if token:
        try:
            return int(token[0].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise ValueError(f"primaryGroupToken is not a number: {token[0]!r}") from None
    sid = by_name.get("objectsid") or []
    return sid_rid(sid[0]) if sid else None
