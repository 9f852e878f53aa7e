"""Active Directory (none can run here): its value rules on values alone (accountExpires,
objectSid RIDs, the default user filter), and a whole read through a connection double that
answers as a domain controller does (primaryGroupID members, nested groups' RIDs, the
continuation references a search from the domain root returns)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ldap3 import BASE

import syncd.directory.ldap as ldap_module
from syncd.config import LdapSourceConfig, parse_config
from syncd.directory.base import SourceError
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_connect import LdapEndpoint
from syncd.directory.ldap_values import (
    account_expired,
    ad_partition_referral,
    guid_string,
    primary_group_id,
    sid_rid,
)

NOW = datetime(2026, 11, 30, tzinfo=UTC)
DOMAIN = "DC=corp,DC=example"
CSE = f"CN=CSE,OU=Groups,{DOMAIN}"
NESTED = f"CN=CSE Platform,OU=Groups,{DOMAIN}"
IN_CHAIN = "1.2.840.113556.1.4.1941"
NEVER = 0x7FFFFFFFFFFFFFFF


def filetime(moment: datetime) -> bytes:
    """accountExpires as AD stores it: 100-ns intervals since 1601-01-01 UTC, as text."""
    ticks = (moment - datetime(1601, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 10
    return str(ticks).encode()


def sid(rid: int, domain: tuple[int, int, int] = (1001, 2002, 3003)) -> bytes:
    """S-1-5-21-<domain>-<rid> in binary."""
    sub = (21, *domain, rid)
    return bytes([1, len(sub)]) + (5).to_bytes(6, "big") + struct.pack(f"<{len(sub)}I", *sub)


@pytest.mark.parametrize(
    ("raw", "expired"),
    [
        (b"0", False),
        (str(NEVER).encode(), False),
        (filetime(NOW - timedelta(days=1)), True),
        (filetime(NOW), True),
        (filetime(NOW + timedelta(minutes=1)), False),
        (b"130000000000000000", True),  # 2012-12-15
    ],
)
def test_account_expires(raw: bytes, expired: bool) -> None:
    assert account_expired(raw, NOW) is expired


def test_account_expires_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="accountExpires is not a number"):
        account_expired(b"soon", NOW)


def test_rid_of_an_object_sid_and_the_primary_group_token() -> None:
    assert sid_rid(sid(1105)) == 1105
    assert sid_rid(sid(513)) == 513
    with pytest.raises(ValueError, match="objectSid is not a SID"):
        sid_rid(b"\x01\x05short")
    assert primary_group_id({"objectSid": [sid(1105)]}) == 1105
    assert primary_group_id({"primaryGroupToken": [b"1200"], "objectSid": [sid(1105)]}) == 1200
    assert primary_group_id({}) is None


def test_references_to_the_dns_and_configuration_partitions_are_not_a_partial_read() -> None:
    assert ad_partition_referral(f"ldap://ForestDnsZones.corp.example/DC=ForestDnsZones,{DOMAIN}")
    assert ad_partition_referral(f"ldap://DomainDnsZones.corp.example/DC=DomainDnsZones,{DOMAIN}")
    assert ad_partition_referral(f"ldap://corp.example/CN=Configuration,{DOMAIN}")
    assert not ad_partition_referral(f"ldap://child.corp.example/DC=child,{DOMAIN}")
    assert not ad_partition_referral("ldap://other.example/DC=other,DC=example")


def ad_config(**keys: Any) -> LdapSourceConfig:
    section = {"servers": ["ldaps://dc1.corp.example"], "flavor": "active_directory",
               "search": [{"base_dn": f"OU=Staff,{DOMAIN}"}], **keys}
    config = parse_config({"directory": {"source": "ldap", "ldap": section}}).directory.ldap
    assert config is not None
    return config


def test_the_default_user_filter_leaves_out_contacts_and_computers() -> None:
    config = ad_config(search=[{"base_dn": DOMAIN}, {"base_dn": DOMAIN, "filter": "(cn=a*)"}])
    assert [rule.filter for rule in config.search] == [
        "(&(objectCategory=person)(objectClass=user))", "(cn=a*)"]
    openldap = ad_config(flavor="openldap", search=[{"base_dn": DOMAIN}])
    assert openldap.search[0].filter == "(objectClass=person)"


def test_an_expired_account_is_disabled_and_a_bad_value_skips_the_entry() -> None:
    source = LdapSource(ad_config())
    guid = bytes(range(16))
    base = {"mail": [b"ann@corp.example"], "objectGUID": [guid], "userAccountControl": [b"512"]}
    expired = source.raw_entry("CN=Ann", {**base, "accountExpires": [b"130000000000000000"]}, NOW)
    assert expired.enabled is False
    never = source.raw_entry("CN=Ann", {**base, "accountExpires": [str(NEVER).encode()]}, NOW)
    assert never.enabled is True
    bad = source.raw_entry("CN=Ann", {**base, "accountExpires": [b"x"]}, NOW)
    assert bad.problem == "accountExpires is not a number: b'x'"
    # The unusable entry still names its user, so the plan holds that user's state.
    assert (bad.email, bad.directory_id) == ("ann@corp.example", guid_string(guid))


# --- a whole read through a domain controller double -------------------------------------


class DomainController:
    """Answers as AD does: a base read of a group gives its objectSid and primaryGroupToken;
    the in-chain search for groups gives the nested groups; a user search gives the users
    matching (this double does not evaluate filters: it records them) and the continuation
    references AD sends for a subtree search from the domain root."""

    def __init__(self, users: list[tuple[str, dict[str, list[bytes]]]],
                 references: list[str]) -> None:
        self.groups = {CSE: (sid(1105), b"1105"), NESTED: (sid(1200), b"1200")}
        self.users = users
        self.references = references
        self.user_filters: list[str] = []
        self.response: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}

    def search(self, base: str, search_filter: str, scope: str, **_: Any) -> bool:
        if scope == BASE:
            object_sid, token = self.groups[base]
            items = [self._entry(base, {"objectSid": [object_sid], "primaryGroupToken": [token]})]
        elif f"(memberOf:{IN_CHAIN}:={CSE})" in search_filter and "objectClass=group" in (
            search_filter
        ):
            items = [self._entry(NESTED, {"objectSid": [self.groups[NESTED][0]]})]
        else:
            self.user_filters.append(search_filter)
            items = [self._entry(dn, attributes) for dn, attributes in self.users]
            items += [{"type": "searchResRef", "uri": [url]} for url in self.references]
        self.response = items
        self.result = {"result": 0, "description": "success", "controls": {}}
        return True

    @staticmethod
    def _entry(dn: str, attributes: dict[str, list[bytes]]) -> dict[str, Any]:
        return {"type": "searchResEntry", "dn": dn, "raw_attributes": attributes}


def _user(name: str, number: int, expires: bytes = b"0") -> tuple[str, dict[str, list[bytes]]]:
    return (f"CN={name},OU=Staff,{DOMAIN}", {
        "mail": [f"{name.lower()}@corp.example".encode()], "objectGUID": [bytes([number] * 16)],
        "userAccountControl": [b"512"], "accountExpires": [expires]})


def read_through(monkeypatch: pytest.MonkeyPatch, controller: DomainController,
                 config: LdapSourceConfig) -> dict[str, bool]:
    monkeypatch.setattr(ldap_module, "connect",
                        lambda _: LdapEndpoint(controller, "ldaps://dc1"))  # type: ignore[arg-type]
    monkeypatch.setattr(ldap_module, "close", lambda _: None)
    snapshot = LdapSource(config).read(NOW)
    return {user.email: user.enabled for user in snapshot.users}


def test_primary_group_members_and_nested_groups_rids_are_in_the_filter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = [_user("Ann", 1), _user("Bob", 2, filetime(NOW - timedelta(days=3))),
             _user("Cy", 3, str(NEVER).encode())]
    partitions = [f"ldap://ForestDnsZones.corp.example/DC=ForestDnsZones,{DOMAIN}",
                  f"ldap://DomainDnsZones.corp.example/DC=DomainDnsZones,{DOMAIN}",
                  f"ldap://corp.example/CN=Configuration,{DOMAIN}"]
    controller = DomainController(users, partitions)
    config = ad_config(search=[{"base_dn": DOMAIN}, {"base_dn": f"DC=child,{DOMAIN}"},
                               {"base_dn": "DC=other,DC=example"}],
                       groups=[{"dn": CSE}])
    found = read_through(monkeypatch, controller, config)
    assert found == {"ann@corp.example": True, "bob@corp.example": False, "cy@corp.example": True}
    people = "(&(objectCategory=person)(objectClass=user))"
    chain = f"(memberOf:{IN_CHAIN}:={CSE})"
    assert controller.user_filters == [
        f"(&{people}(|{chain}(primaryGroupID=1105)(primaryGroupID=1200)))",
        # A RID means something in its own domain only: a child domain's search has none.
        f"(&{people}{chain})",
        f"(&{people}{chain})",
    ]


def test_a_direct_group_has_only_its_own_rid(monkeypatch: pytest.MonkeyPatch) -> None:
    controller = DomainController([_user("Ann", 1)], [])
    config = ad_config(groups=[{"dn": CSE, "nested": False}])
    read_through(monkeypatch, controller, config)
    assert controller.user_filters == [
        f"(&(&(objectCategory=person)(objectClass=user))(|(memberOf={CSE})(primaryGroupID=1105)))"]


def test_a_referral_to_another_domain_fails_the_read(monkeypatch: pytest.MonkeyPatch) -> None:
    child = f"ldap://child.corp.example/DC=child,{DOMAIN}"
    controller = DomainController([_user("Ann", 1)], [
        f"ldap://DomainDnsZones.corp.example/DC=DomainDnsZones,{DOMAIN}", child])
    with pytest.raises(SourceError) as caught:
        read_through(monkeypatch, controller, ad_config(search=[{"base_dn": DOMAIN}]))
    assert str(caught.value).startswith(
        f"directory.ldap.search.0: {DOMAIN} refers to other servers, which syncd does not "
        f"follow: {child}; ")
