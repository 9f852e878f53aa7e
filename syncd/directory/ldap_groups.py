"""Group membership for the LDAP source, by each group's type: pure rules, no I/O.

A group's members are read from the attribute its type uses: groupOfNames (and AD's group)
``member``, groupOfUniqueNames ``uniqueMember`` (DNs with an optional ``#'0101'B`` UID, which
is dropped), posixGroup ``memberUid`` (user names, matched against the users' ``uid``), plus
``directory.ldap.member_attribute`` when it names another DN-valued attribute. Groups of one
type may hold groups of another. Member DNs are compared in ``normalise_dn`` form, as the
server matches them. Values an AD server sends in ranges (``member;range=0-1499``) are merged
by the reader before they reach ``group_values``.

Membership is resolved in bulk: the in-scope users are read once; a member value is looked up
in them, and only a DN that is a known group (one search lists the groups' DNs) is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from syncd.directory.ldap_values import normalise_dn, strip_unique_member_uid

DN_MEMBER_ATTRIBUTES = ("member", "uniqueMember")
UID_MEMBER_ATTRIBUTE = "memberUid"
USER_NAME_ATTRIBUTE = "uid"
"""What posixGroup memberUid values name (RFC 2307 posixAccount)."""

_RANGE = re.compile(r"^(?P<name>[^;]+)(?:;[^;]*)*?;range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.I)


def value_range(key: str) -> tuple[str, int, int | None] | None:
    """``member;range=0-1499`` -> (``member``, 0, 1499); ``member;range=1500-*`` -> (.., None).

    None for an attribute description without a range option.
    """
    match = _RANGE.match(key)
    if match is None:
        return None
    high = match["high"]
    return match["name"], int(match["low"]), None if high == "*" else int(high)


@dataclass(frozen=True)
class GroupValues:
    member_dns: tuple[str, ...]
    """Member DNs in ``normalise_dn`` form (users or groups)."""
    member_uids: tuple[str, ...]
    """posixGroup member names, case-folded."""


def group_values(
    attributes: Mapping[str, Sequence[bytes]], member_attribute: str = "member"
) -> GroupValues:
    """The members of one group entry, whatever its type. Attribute names are case-insensitive."""
    dn_names = {name.lower() for name in (*DN_MEMBER_ATTRIBUTES, member_attribute)}
    dns: list[str] = []
    uids: list[str] = []
    for key, values in attributes.items():
        name = key.split(";", 1)[0].lower()
        texts = [value.decode("utf-8", errors="replace").strip() for value in values]
        if name == UID_MEMBER_ATTRIBUTE.lower():
            uids += [text.casefold() for text in texts if text]
        elif name in dn_names:
            dns += [normalise_dn(strip_unique_member_uid(text)) for text in texts if text]
    return GroupValues(tuple(dns), tuple(uids))


@dataclass(frozen=True)
class GroupToExpand:
    dn: str
    nested: bool
    where: str


GroupReader = Callable[[GroupToExpand], GroupValues | None]


def expand_groups(
    groups: Sequence[GroupToExpand],
    read: GroupReader,
    users: set[str],
    users_by_name: Mapping[str, Sequence[str]],
    known_groups: Mapping[str, str],
) -> set[str]:
    """Normalised DNs of the users (among ``users``) who are members of ``groups``.

    A nested group's member groups (``known_groups``: normalised DN -> DN as the server
    returned it) are expanded too; each group is
    read once, so a loop ends. A member that is neither an in-scope user nor a known group
    (an out-of-scope entry, a dangling DN) costs nothing. ``read`` returns None for a group
    that has gone; the caller has already checked the configured ones exist.
    """
    members: set[str] = set()
    seen: set[str] = set()
    pending = list(groups)
    while pending:
        group = pending.pop()
        key = normalise_dn(group.dn)
        if key in seen:
            continue
        seen.add(key)
        values = read(group)
        if values is None:
            continue
        for name in values.member_uids:
            members.update(users_by_name.get(name, ()))
        for member in values.member_dns:
            if member in users:
                members.add(member)
            elif group.nested and member in known_groups and member not in seen:
                dn = known_groups[member]
                pending.append(GroupToExpand(dn, True, f"{group.where} (member group {dn})"))
    return members
