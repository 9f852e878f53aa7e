"""Pure group rules: member values by group type, ranged attribute names, the bulk expansion
(nesting, loops, out-of-scope members at no cost), and Active Directory's ranged replies
(``member;range=0-1499`` ... ``member;range=3000-*``) read whole through a connection double
that answers exactly as AD does (no AD can run here)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

import syncd.directory.ldap as ldap_module
from syncd.config import parse_config
from syncd.directory.base import SourceError
from syncd.directory.ldap import LdapSource
from syncd.directory.ldap_connect import LdapEndpoint
from syncd.directory.ldap_groups import (
    GroupToExpand,
    GroupValues,
    expand_groups,
    group_values,
    value_range,
)
from syncd.directory.ldap_values import normalise_dn

NOW = datetime(2026, 11, 30, tzinfo=UTC)
AD_RANGE = 1500
"""Active Directory's MaxValRange: values of one attribute per reply."""


def test_value_ranges() -> None:
    assert value_range("member;range=0-1499") == ("member", 0, 1499)
    assert value_range("Member;Range=1500-*") == ("Member", 1500, None)
    assert value_range("member;binary;range=3-4") == ("member", 3, 4)
    assert value_range("member") is None
    assert value_range("member;lang-en") is None


def test_member_values_by_group_type() -> None:
    values = group_values({
        "member": [b"CN=Ann,DC=x"],
        "uniqueMember": [b"uid=bob,dc=x#'0101'B", b""],
        "memberUid": [b"Carl", b" dora "],
        "roleOccupant": [b"cn=eve,dc=x"],
        "cn": [b"not a member"],
    }, member_attribute="roleOccupant")
    assert sorted(values.member_dns) == ["cn=ann,dc=x", "cn=eve,dc=x", "uid=bob,dc=x"]
    assert values.member_uids == ("carl", "dora")


def test_expansion_in_bulk_with_nesting_and_a_loop() -> None:
    groups = {
        "cn=top,dc=x": GroupValues(("uid=a,dc=x", "cn=sub,dc=x", "uid=out1,dc=x"), ()),
        "cn=sub,dc=x": GroupValues(("cn=top,dc=x", "uid=b,dc=x"), ("carl",)),
        "cn=other,dc=x": GroupValues(("uid=c,dc=x",), ()),
    }
    reads: list[str] = []

    def read(group: GroupToExpand) -> GroupValues | None:
        reads.append(group.dn)
        return groups.get(normalise_dn(group.dn))

    users = {"uid=a,dc=x", "uid=b,dc=x", "uid=c,dc=x", "uid=carl,dc=x"}
    known = {dn: dn.upper() for dn in groups}
    found = expand_groups([GroupToExpand("cn=top,dc=x", True, "g.0")], read, users,
                          {"carl": ["uid=carl,dc=x"]}, known)
    assert found == {"uid=a,dc=x", "uid=b,dc=x", "uid=carl,dc=x"}
    assert reads == ["cn=top,dc=x", "CN=SUB,DC=X"]  # uid=out1 (out of scope) is never read
    direct = expand_groups([GroupToExpand("cn=top,dc=x", False, "g.0")], read, users, {}, known)
    assert direct == {"uid=a,dc=x"}


# --- Active Directory's ranged replies ----------------------------------------------------


class RangedDirectory:
    """A connection double answering a base search the way Active Directory does: a
    multi-valued attribute with more than 1500 values comes as ``member;range=0-1499``, a
    request for ``member;range=N-*`` returns the next 1500 as ``member;range=N-(N+1499)``, and
    the last part as ``member;range=N-*`` (empty when N is the count). A result is success
    with no paging control, as AD sends for a base search."""

    def __init__(self, groups: dict[str, list[bytes]]) -> None:
        self.groups = groups
        self.requests: list[list[str]] = []
        self.response: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}

    def search(self, base: str, _filter: str, _scope: str, *, attributes: list[str],
               **_: Any) -> bool:
        self.requests.append(list(attributes))
        members = self.groups[base]
        raw: dict[str, list[bytes]] = {}
        for wanted in attributes:
            name, _, option = wanted.partition(";")
            if name.lower() != "member":
                continue
            start = int(option.removeprefix("range=").split("-")[0]) if option else 0
            if start == 0 and len(members) <= AD_RANGE and not option:
                raw["member"] = members
                continue
            end = start + AD_RANGE
            if end >= len(members):
                raw[f"member;range={start}-*"] = members[start:]
            else:
                raw[f"member;range={start}-{end - 1}"] = members[start:end]
        self.response = [{"type": "searchResEntry", "dn": base, "raw_attributes": raw}]
        self.result = {"result": 0, "description": "success", "controls": {}}
        return True


def _source() -> LdapSource:
    config = parse_config({"directory": {"source": "ldap", "ldap": {
        "servers": ["ldaps://dc1.corp.example"],
        "search": [{"base_dn": "DC=corp,DC=example"}],
        "groups": [{"dn": "CN=Big,DC=corp,DC=example"}],
    }}}).directory.ldap
    assert config is not None
    return LdapSource(config)


@contextmanager
def _connected(monkeypatch: pytest.MonkeyPatch, double: RangedDirectory) -> Iterator[None]:
    monkeypatch.setattr(ldap_module, "connect",
                        lambda config: LdapEndpoint(double, "ldaps://dc1"))  # type: ignore[arg-type]
    monkeypatch.setattr(ldap_module, "close", lambda endpoint: None)
    yield


@pytest.mark.parametrize("count", [1500, 1501, 3000, 4321])
def test_ranged_member_values_are_read_to_the_end(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    members = [f"CN=User {n},OU=Staff,DC=corp,DC=example".encode() for n in range(count)]
    double = RangedDirectory({"CN=Big,DC=corp,DC=example": members})
    source = _source()
    with _connected(monkeypatch, double):
        endpoint = ldap_module.connect(source.config)
        entry = source._read_group(endpoint, "CN=Big,DC=corp,DC=example", "g")
    assert entry is not None
    assert entry["member"] == members
    ranged = [r for r in double.requests if any(";range=" in a for a in r)]
    assert ranged == [[f"member;range={start}-*"] for start in range(1500, count, 1500)]


def test_a_ranged_reply_that_does_not_continue_fails_the_read(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    members = [f"CN=U{n},DC=corp,DC=example".encode() for n in range(2000)]
    double = RangedDirectory({"CN=Big,DC=corp,DC=example": members})
    real_search = double.search

    def forgetful(*args: Any, **kwargs: Any) -> bool:
        real_search(*args, **kwargs)
        if any(";range=" in a for a in kwargs["attributes"]):
            double.response[0]["raw_attributes"] = {}
        return True

    double.search = forgetful  # type: ignore[method-assign]
    source = _source()
    with _connected(monkeypatch, double), pytest.raises(SourceError) as caught:
        source._read_group(ldap_module.connect(source.config), "CN=Big,DC=corp,DC=example", "g")
    assert str(caught.value) == (
        "g: group CN=Big,DC=corp,DC=example: the server did not answer the ranged read "
        "member;range=1500-*; the group's members cannot be read whole")
