"""Directory API ``users.list`` and ``members.list``, fed from the data directory's file.

``users.list`` takes ``customer`` (``my_customer`` or the customerId) or ``domain``, a
``query`` of space-separated clauses ``field=value`` / ``field:value`` (value quoted with
single quotes if it holds spaces) over ``email``, ``isSuspended``, ``isArchived``, ``isAdmin``,
``orgUnitPath`` (the unit and everything under it), ``givenName``, ``familyName`` and custom
schema fields ``Schema.field``; ``:`` matches a prefix (a trailing ``*`` is allowed), ``=``
matches exactly. ``members.list`` with ``includeDerivedMembership=true`` adds the users of
nested groups. The caller's token subject must be an administrator.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from syncd.sandbox.context import Call, Reply, Services
from syncd.sandbox.errors import ApiError, forbidden, invalid, not_found
from syncd.sandbox.paging import page_size, paginate
from syncd.sandbox.store import DirectoryData, DirectoryGroup, DirectoryUser

USERS_MAX = 500
USERS_DEFAULT = 100
MEMBERS_MAX = 200
_NOT_AUTHORIZED = "Not Authorized to access this resource/api"
_CLAUSE = re.compile(r"\s*([\w.]+)([=:])('(?:[^'\\]|\\.)*'|\S+)")


@dataclass(frozen=True)
class Clause:
    field: str
    op: str
    value: str


def parse_query(query: str) -> list[Clause]:
    """The clauses of a users.list query; 400 for anything else."""
    clauses: list[Clause] = []
    position = 0
    text = query.strip()
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None:
            raise invalid(f"Invalid Input: cannot read the query at {text[position:]!r}")
        value = match.group(3)
        if value.startswith("'") and value.endswith("'"):
            value = value[1:-1].replace("\\'", "'")
        clauses.append(Clause(match.group(1), match.group(2), value))
        position = match.end()
    return clauses


def _text_matches(candidate: str | None, clause: Clause) -> bool:
    if candidate is None:
        return False
    if clause.op == "=":
        return candidate.lower() == clause.value.lower()
    return candidate.lower().startswith(clause.value.rstrip("*").lower())


def _boolean(clause: Clause) -> bool:
    if clause.value.lower() not in ("true", "false"):
        raise invalid(f"Invalid Input: {clause.field} takes true or false")
    return clause.value.lower() == "true"


def _in_unit(user: DirectoryUser, clause: Clause) -> bool:
    unit = clause.value.rstrip("/").lower()
    path = user.orgUnitPath.rstrip("/").lower()
    return path == unit or path.startswith(unit + "/") or unit == ""


def _custom_field(user: DirectoryUser, clause: Clause) -> bool:
    schema, _, name = clause.field.partition(".")
    value = user.customSchemas.get(schema, {}).get(name)
    values = value if isinstance(value, list) else [value]
    for item in values:
        if isinstance(item, dict):
            item = item.get("value")
        if item is not None and _text_matches(str(item), clause):
            return True
    return False


FIELDS: dict[str, Callable[[DirectoryUser, Clause], bool]] = {
    "email": lambda u, c: _text_matches(u.primaryEmail, c),
    "isSuspended": lambda u, c: u.suspended == _boolean(c),
    "isArchived": lambda u, c: u.archived == _boolean(c),
    "isAdmin": lambda u, c: u.isAdmin == _boolean(c),
    "orgUnitPath": _in_unit,
    "givenName": lambda u, c: _text_matches((u.name or {}).get("givenName"), c),
    "familyName": lambda u, c: _text_matches((u.name or {}).get("familyName"), c),
}
"""Query fields and how each matches a user; ``Schema.field`` goes to custom schemas."""


def matches(user: DirectoryUser, clauses: list[Clause]) -> bool:
    for clause in clauses:
        check = FIELDS.get(clause.field)
        if check is None and "." in clause.field:
            check = _custom_field
        if check is None:
            raise invalid(f"Invalid Input: unknown query field {clause.field}")
        if not check(user, clause):
            return False
    return True


def _admin(services: Services, call: Call) -> DirectoryData:
    directory = services.store.directory()
    subject = call.grant.subject
    user = directory.user(subject) if subject else None
    if user is None or not user.isAdmin or user.suspended:
        raise forbidden(_NOT_AUTHORIZED)
    return directory


def user_view(
    user: DirectoryUser, directory: DirectoryData, projection: str, mask: list[str]
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "kind": "admin#directory#user",
        "id": user.user_id,
        "primaryEmail": user.primaryEmail,
        "isAdmin": user.isAdmin,
        "suspended": user.suspended,
        "archived": user.archived,
        "orgUnitPath": user.orgUnitPath,
        "isMailboxSetup": user.isMailboxSetup,
        "customerId": directory.customerId,
    }
    if user.name:
        view["name"] = dict(user.name)
    if user.aliases:
        view["aliases"] = list(user.aliases)
    if projection == "full" and user.customSchemas:
        view["customSchemas"] = user.customSchemas
    elif projection == "custom":
        chosen = {k: v for k, v in user.customSchemas.items() if k in mask}
        if chosen:
            view["customSchemas"] = chosen
    return view


def _scope_users(directory: DirectoryData, query: dict[str, str]) -> list[DirectoryUser]:
    customer, domain = query.get("customer"), query.get("domain")
    if not customer and not domain:
        raise ApiError(400, "Bad Request: give customer or domain.", reason="badRequest")
    if customer and customer not in ("my_customer", directory.customerId):
        raise forbidden(_NOT_AUTHORIZED)
    if domain and domain.lower() != directory.domain.lower():
        raise forbidden(_NOT_AUTHORIZED)
    users = directory.users
    if domain:
        users = [u for u in users if u.primaryEmail.lower().endswith("@" + domain.lower())]
    return users


_ORDER_KEYS: dict[str, Callable[[DirectoryUser], str]] = {
    "email": lambda u: u.primaryEmail.lower(),
    "givenName": lambda u: (u.name or {}).get("givenName", "").lower(),
    "familyName": lambda u: (u.name or {}).get("familyName", "").lower(),
}


def list_users(services: Services, call: Call) -> Reply:
    directory = _admin(services, call)
    query = call.query
    size = page_size(
        query.get("maxResults"), default=USERS_DEFAULT, maximum=USERS_MAX, name="maxResults"
    )
    projection = query.get("projection", "basic")
    mask = [m.strip() for m in query.get("customFieldMask", "").split(",") if m.strip()]
    if projection not in ("basic", "custom", "full"):
        raise invalid(f"Invalid value for projection: {projection!r}")
    if projection == "custom" and not mask:
        raise invalid("customFieldMask is required when projection is custom.")
    order_key = _ORDER_KEYS.get(query.get("orderBy", "email"))
    if order_key is None:
        raise invalid(f"Invalid value for orderBy: {query.get('orderBy')!r}")
    clauses = parse_query(query.get("query", ""))
    chosen = [u for u in _scope_users(directory, query) if matches(u, clauses)]
    chosen.sort(key=order_key, reverse=query.get("sortOrder", "").upper() == "DESCENDING")
    scope = "|".join(
        query.get(k, "")
        for k in ("customer", "domain", "query", "orderBy", "sortOrder", "projection")
    )
    page, token = paginate(chosen, query.get("pageToken"), size, "users:" + scope)
    answer: dict[str, Any] = {"kind": "admin#directory#users"}
    if page:
        answer["users"] = [user_view(u, directory, projection, mask) for u in page]
    if token:
        answer["nextPageToken"] = token
    return Reply(200, answer)


def _member_view(directory: DirectoryData, email: str, role: str) -> dict[str, Any]:
    group = directory.group(email)
    user = directory.user(email)
    view: dict[str, Any] = {
        "kind": "admin#directory#member",
        "email": email,
        "role": role,
        "type": "GROUP" if group else "USER",
        "status": "SUSPENDED" if user and user.suspended else "ACTIVE",
    }
    if group:
        view["id"] = group.group_id
    elif user:
        view["id"] = user.user_id
    return view


def expand_members(
    directory: DirectoryData, group: DirectoryGroup, derived: bool
) -> list[dict[str, Any]]:
    """The group's members; with ``derived`` also the users of nested groups, each once."""
    seen_groups = {group.email.lower()}
    seen_emails: set[str] = set()
    result: list[dict[str, Any]] = []
    pending = [group]
    while pending:
        current = pending.pop(0)
        for member in current.member_entries():
            nested = directory.group(member.email)
            is_direct = current is group
            if nested is not None and derived and nested.email.lower() not in seen_groups:
                seen_groups.add(nested.email.lower())
                pending.append(nested)
            if member.email.lower() in seen_emails or (nested is not None and not is_direct):
                continue
            seen_emails.add(member.email.lower())
            result.append(
                _member_view(directory, member.email, member.role if is_direct else "MEMBER")
            )
    return result


def list_members(services: Services, call: Call) -> Reply:
    directory = _admin(services, call)
    query = call.query
    group = directory.group(call.params["groupKey"])
    if group is None:
        raise not_found("Resource Not Found: groupKey")
    size = page_size(
        query.get("maxResults"), default=MEMBERS_MAX, maximum=MEMBERS_MAX, name="maxResults"
    )
    derived = query.get("includeDerivedMembership", "false").lower() == "true"
    members = expand_members(directory, group, derived)
    roles = {r.strip().upper() for r in query.get("roles", "").split(",") if r.strip()}
    if roles:
        members = [m for m in members if m["role"] in roles]
    scope = f"members:{group.email}|{derived}|{sorted(roles)}"
    page, token = paginate(members, query.get("pageToken"), size, scope)
    answer: dict[str, Any] = {"kind": "admin#directory#members"}
    if page:
        answer["members"] = page
    if token:
        answer["nextPageToken"] = token
    return Reply(200, answer)
