"""A real OpenLDAP slapd for the LDAP source tests, started once per session on 127.0.0.1.

The directory (suffix dc=example,dc=org) holds people with unicode names, a DN with an escaped
comma, emails that need RFC 4515 escaping, a disabled account, entries that must be skipped,
60 staff users, groups nested in a loop, 600 users under ou=many (more than slapd's default
size limit of 500, which applies to paged searches too), and a referral to another server
under ou=partners. slapd runs with its stock limits: the service account (an ordinary DN with
read access, not the root DN, which bypasses limits) cannot read ou=many whole; a second
account, ``BULK_DN``, has the limits line an administrator adds for syncd. slapd serves plain
LDAP (with StartTLS)
and ldaps:// with a certificate from a test CA made here, valid for the name ``localhost``
only, so ``127.0.0.1`` is a wrong host name. A missing slapd fails the tests, never skips them.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from syncd.config import LdapSourceConfig, parse_config
from tests.support.slapd import Slapd, SlapdError, SlapdTLS, check_installed, ssha
from tests.support.testca import CAKey, make_root, new_key, write_private_file

SUFFIX = "dc=example,dc=org"
SERVICE_DN = f"cn=syncd,ou=services,{SUFFIX}"
BULK_DN = f"cn=syncd-bulk,ou=services,{SUFFIX}"
SIZE_LIMIT = 500
"""slapd's default sizelimit (nothing in the test configuration changes it)."""
STAFF = 60
MANY = 600
MANY_BASE = f"ou=many,{SUFFIX}"
ALIASES_BASE = f"ou=aliases,{SUFFIX}"
GROUPS_BASE = f"ou=groups,{SUFFIX}"
MULTI_MAILS = ("multi.z@example.org", "Multi@Other.Example", "a.multi@example.org", "bad value")
"""One entry's mail values, in the order slapd stores (and returns) them."""
PROXY_BASE = f"ou=proxy,{SUFFIX}"
PROXY_ADDRESSES = ("SMTP:proxy@example.org", "smtp:P.Roxy@Example.org", "X500:/o=Example/cn=proxy",
                   "sip:proxy@example.org", "smtp:not an address")
"""proxyAddresses-style values (in janetMailbox, an IA5 string matched case-insensitively, as
proxyAddresses is) of the one entry under PROXY_BASE."""
PARTNERS_BASE = f"ou=partners,{SUFFIX}"
REFERRAL_URL = "ldap://ldap.partner.example/ou=remote,dc=partner,dc=example"
BULK_LIMITS = f'limits dn.exact="{BULK_DN}" size.prtotal=unlimited'
ZOE_DN = f"cn=Zoë Łukasiewicz,ou=people,{SUFFIX}"
JOHN_DN = f"cn=Smith\\, John,ou=people,{SUFFIX}"
JURGEN_DN = f"cn=Jürgen Groß,ou=people,{SUFFIX}"
SPELLING_NFD = unicodedata.normalize("NFD", ZOE_DN)
SPELLING_SPACES = JOHN_DN.replace(", John", ",  John")
SPELLING_OID = f"0.9.2342.19200300.100.1.1=erin,ou=people,{SUFFIX}"


def _attr(name: str, value: str) -> str:
    """One LDIF line; base64 for non-ASCII values (RFC 2849)."""
    if value.isascii() and not value.startswith((" ", ":", "<")):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def _entry(dn: str, *pairs: tuple[str, str]) -> str:
    return "\n".join([_attr("dn", dn), *(_attr(k, v) for k, v in pairs)]) + "\n\n"


def _person(dn: str, uid: str, mail: str | None, *extra: tuple[str, str]) -> str:
    pairs = [("objectClass", "inetOrgPerson"), ("uid", uid), ("sn", uid)]
    cn = dn.split(",", 1)[0].split("=", 1)[1] if dn.startswith("cn=") else uid
    pairs.append(("cn", cn.replace("\\,", ",")))
    if mail is not None:
        pairs.append(("mail", mail))
    return _entry(dn, *pairs, *extra)


def _group(cn: str, *members: str) -> str:
    return _entry(
        f"cn={cn},ou=groups,{SUFFIX}",
        ("objectClass", "groupOfNames"),
        ("cn", cn),
        *(("member", m) for m in members),
    )


def directory_ldif(service_password: str) -> str:
    people = f"ou=people,{SUFFIX}"
    parts = [
        _entry(SUFFIX, ("objectClass", "dcObject"), ("objectClass", "organization"),
               ("o", "Example"), ("dc", "example")),
    ]
    for ou in ("people", "staff", "contractors", "services", "groups", "many", "partners",
               "aliases", "proxy"):
        parts.append(_entry(f"ou={ou},{SUFFIX}", ("objectClass", "organizationalUnit"),
                            ("ou", ou)))
    parts.append(_entry(f"ou=archive,ou=contractors,{SUFFIX}",
                        ("objectClass", "organizationalUnit"), ("ou", "archive")))
    parts.append(_entry(SERVICE_DN, ("objectClass", "person"),
                        ("objectClass", "simpleSecurityObject"), ("cn", "syncd"),
                        ("sn", "syncd"), ("userPassword", ssha(service_password))))
    parts.append(_entry(BULK_DN, ("objectClass", "person"),
                        ("objectClass", "simpleSecurityObject"), ("cn", "syncd-bulk"),
                        ("sn", "syncd-bulk"), ("userPassword", ssha(service_password))))
    # A subordinate referral (RFC 3296): entries held by another server.
    parts.append(_entry(f"ou=remote,{PARTNERS_BASE}", ("objectClass", "referral"),
                        ("objectClass", "extensibleObject"), ("ou", "remote"),
                        ("ref", REFERRAL_URL)))
    parts.append(_person(f"uid=pat,{PARTNERS_BASE}", "pat", "pat@example.org"))
    parts.append(_person(f"uid=multi,{ALIASES_BASE}", "multi", None,
                         *(("mail", mail) for mail in MULTI_MAILS)))
    parts.append(_entry(f"uid=proxy,{PROXY_BASE}", ("objectClass", "inetOrgPerson"),
                        ("objectClass", "extensibleObject"), ("uid", "proxy"), ("sn", "proxy"),
                        ("cn", "proxy"), ("mail", "proxy@example.org"),
                        ("mail", "second@example.org"),
                        *(("janetMailbox", value) for value in PROXY_ADDRESSES)))
    parts += [
        _person(f"uid=m{n:04d},{MANY_BASE}", f"m{n:04d}", f"m{n:04d}@example.org")
        for n in range(MANY)
    ]
    parts += [
        _person(f"uid=alice,{people}", "alice", "Alice@Example.ORG"),
        _person(f"uid=bob,{people}", "bob", "bob@example.org", ("employeeType", "Disabled")),
        _person(f"uid=erin,{people}", "erin", "erin@example.org", ("employeeType", "Staff")),
        _person(ZOE_DN, "zoe", "zoe@example.org"),
        _person(JOHN_DN, "jsmith", "john.smith@example.org"),
        _person(JURGEN_DN, "jurgen", "not an address"),
        _person(f"uid=team-star,{people}", "team-star", "team*@example.org"),
        _person(f"uid=team-a,{people}", "team-a", "team-a@example.org"),
        _person(f"uid=team-b,{people}", "team-b", "team-b@example.org"),
        _person(f"uid=ohara,{people}", "ohara", "o(hara)\\x@example.org"),
        _person(f"uid=nomail,{people}", "nomail", None),
        _person(f"uid=alice2,{people}", "alice2", "alice@example.org"),
        _person(f"uid=carl,ou=contractors,{SUFFIX}", "carl", "carl@example.org"),
        _person(f"uid=old,ou=archive,ou=contractors,{SUFFIX}", "old", "old@example.org"),
    ]
    parts += [
        _person(f"uid=s{n:03d},ou=staff,{SUFFIX}", f"s{n:03d}", f"s{n:03d}@example.org")
        for n in range(STAFF)
    ]
    groups = f"ou=groups,{SUFFIX}"
    parts += [
        # Members spelled differently from the entries' own DNs: case, spaces, \2C for \,.
        _group("cse", f"uid=alice,{people}", f"cn=eng,{groups}",
               f"cn=Smith\\2C John,ou=People,{SUFFIX}"),
        _group("eng", f"CN=Zoë Łukasiewicz, ou=people, {SUFFIX}", f"cn=platform,{groups}"),
        _group("platform", f"uid=s001,ou=staff,{SUFFIX}", f"cn=cse,{groups}",
               f"uid=ghost,{people}"),
        _group("direct", f"uid=bob,{people}", f"cn=eng,{groups}"),
        # Spellings slapd matches to the entries' DNs: another Unicode normalisation (NFD),
        # a doubled inner space, an attribute OID (uid).
        _group("spellings", SPELLING_NFD, SPELLING_SPACES, SPELLING_OID),
        _entry(f"cn=unique,{groups}", ("objectClass", "groupOfUniqueNames"), ("cn", "unique"),
               ("uniqueMember", f"uid=alice,{people}#'0101'B"),
               ("uniqueMember", f"uid=team-a,{people}"), ("uniqueMember", f"cn=posix,{groups}")),
        _entry(f"cn=posix,{groups}", ("objectClass", "posixGroup"), ("cn", "posix"),
               ("gidNumber", "5000"), ("memberUid", "s002"), ("memberUid", "s003"),
               ("memberUid", "nobody")),
        _group("mixed", f"cn=unique,{groups}", f"uid=s010,ou=staff,{SUFFIX}"),
        _group("big", *(f"uid=m{n:04d},{MANY_BASE}" for n in range(MANY)),
               f"uid=s020,ou=staff,{SUFFIX}"),
    ]
    return "".join(parts)


# --- a test CA and the server's certificate -----------------------------------------------


def _server_certificate(ca_key: CAKey, ca_cert: x509.Certificate, host: str) -> tuple[Any, Any]:
    key = new_key("rsa")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_ca_file(folder: Path, name: str) -> tuple[CAKey, x509.Certificate, Path]:
    key = new_key("rsa")
    cert = make_root(key, name, dt.datetime.now(dt.UTC), 2)
    path = folder / f"{name.replace(' ', '-').lower()}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert, path


# --- the server ---------------------------------------------------------------------------


@dataclass
class LdapServer:
    slapd: Slapd
    service_password: str
    password_file: Path
    ca_file: Path
    other_ca_file: Path
    """A CA that did not issue the server's certificate."""

    @property
    def url(self) -> str:
        return f"ldap://localhost:{self.slapd.port}"

    @property
    def ldaps_url(self) -> str:
        return self.slapd.ldaps_url("localhost")


@pytest.fixture(scope="session")
def ldap_server() -> Iterator[LdapServer]:
    try:
        check_installed()
    except SlapdError as exc:
        pytest.fail(str(exc))
    folder = Path(tempfile.mkdtemp(prefix="syncd-test-slapd-"))
    ca_key, ca_cert, ca_file = make_ca_file(folder, "LDAP Test CA")
    _, _, other_ca_file = make_ca_file(folder, "Other CA")
    server_key, server_cert = _server_certificate(ca_key, ca_cert, "localhost")
    key_file, cert_file = folder / "server.key", folder / "server.pem"
    write_private_file(key_file, server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    password = secrets.token_urlsafe(16)
    password_file = folder / "bind.pass"
    write_private_file(password_file, (password + "\n").encode())
    access = (  # stock limits; BULK_DN gets the line syncd's size-limit hint names
        f"{BULK_LIMITS}\n"
        "access to attrs=userPassword by anonymous auth by * none\n"
        "access to * by users read by * none"
    )
    slapd = Slapd(folder / "slapd", root_password=secrets.token_urlsafe(16),
                  tls=SlapdTLS(ca_file, cert_file, key_file), extra_config=access)
    try:
        slapd.load(directory_ldif(password))
        slapd.start()
    except SlapdError as exc:
        slapd.remove()
        pytest.fail(str(exc))
    try:
        yield LdapServer(slapd, password, password_file, ca_file, other_ca_file)
    finally:
        slapd.remove()


@pytest.fixture
def ldap_config(ldap_server: LdapServer) -> Callable[..., LdapSourceConfig]:
    """Build ``directory.ldap`` through the real schema: StartTLS to the session server, bound
    as the service account, page size 7, member groups under ou=groups; keyword arguments
    override keys."""

    def build(**overrides: Any) -> LdapSourceConfig:
        section: dict[str, Any] = {
            "servers": [ldap_server.url],
            "start_tls": True,
            "ca_file": str(ldap_server.ca_file),
            "bind_dn": SERVICE_DN,
            "bind_password_file": str(ldap_server.password_file),
            "page_size": 7,
            "search": [
                {"base_dn": f"ou=people,{SUFFIX}", "filter": "(objectClass=inetOrgPerson)"},
                {"base_dn": f"ou=staff,{SUFFIX}", "scope": "one"},
                {"base_dn": f"ou=contractors,{SUFFIX}", "scope": "one"},
            ],
            "disabled_attribute": "employeeType",
            "disabled_values": ["disabled"],
            # The suffix holds a referral (ou=partners): member groups are looked for here.
            "group_base_dns": [GROUPS_BASE],
        }
        section.update(overrides)
        config = parse_config({"directory": {"source": "ldap", "ldap": section}})
        assert config.directory.ldap is not None
        return config.directory.ldap

    return build
