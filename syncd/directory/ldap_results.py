"""Is a search result whole? The result code and references of one LDAP search (or page).

ldap3 raises nothing for sizeLimitExceeded (4), timeLimitExceeded (3) or a referral (10), and
a paged search the server cut short looks complete. Every search syncd makes, and every page
of it, goes through ``read_failure``: anything but success (0) without continuation references
is a failed read, described in one line that names the code, what was being read, and (for the
limits) what the directory's administrator can change. Pure: no connection, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SUCCESS = 0
TIME_LIMIT_EXCEEDED = 3
SIZE_LIMIT_EXCEEDED = 4
REFERRAL = 10
ADMIN_LIMIT_EXCEEDED = 11

_NAMES = {
    TIME_LIMIT_EXCEEDED: "timeLimitExceeded",
    SIZE_LIMIT_EXCEEDED: "sizeLimitExceeded",
    REFERRAL: "referral",
    ADMIN_LIMIT_EXCEEDED: "adminLimitExceeded",
}


def size_limit_hint(bind_dn: str | None, flavor: str) -> str:
    """What lets the bind DN read every entry, for the directory's administrator."""
    if flavor == "active_directory":
        return (
            "Active Directory: page_size must not exceed the LDAP policy's MaxPageSize, and "
            "MaxResultSetSize must allow the whole result (ntdsutil, LDAP policies)"
        )
    who = f'dn.exact="{bind_dn}"' if bind_dn else "anonymous"
    return (
        f"OpenLDAP: add `limits {who} size.prtotal=unlimited` (or size=unlimited) to the "
        "database's configuration (olcLimits), or raise its sizelimit"
    )


def result_name(result: Mapping[str, Any]) -> str:
    code = int(result.get("result", -1))
    name = str(result.get("description") or _NAMES.get(code) or "error")
    return f"{name} (code {code})"


def read_failure(
    result: Mapping[str, Any],
    references: Sequence[str],
    *,
    subject: str,
    count: int,
    bind_dn: str | None,
    flavor: str,
) -> str | None:
    """Why the search of ``subject`` (``ou=people,dc=x`` or ``group cn=g,...``) is not whole.

    None when the result code is success and the server sent no continuation reference.
    ``count`` is the number of entries read before (and in) this reply.
    """
    code = int(result.get("result", -1))
    referrals = [*(result.get("referrals") or ()), *references]
    if referrals or code == REFERRAL:
        urls = ", ".join(dict.fromkeys(str(url) for url in referrals)) or "(no URL given)"
        return (
            f"{subject} refers to other servers, which syncd does not follow: {urls}; "
            "a partial directory is never used: search the server that holds those entries, "
            "or a base DN without referrals"
        )
    if code == SUCCESS:
        return None
    read = f"{subject}: the server stopped the read after {count} entries: {result_name(result)}"
    hint = size_limit_hint(bind_dn, flavor)
    if code == SIZE_LIMIT_EXCEEDED:
        return f"{read}; the bind DN may not read that many entries. {hint}"
    if code == TIME_LIMIT_EXCEEDED:
        return (
            f"{read}; raise operation_timeout, or the server's time limit for the bind DN "
            "(OpenLDAP: limits ... time=unlimited; Active Directory: MaxQueryDuration)"
        )
    if code == ADMIN_LIMIT_EXCEEDED:
        return f"{read}; an administrative limit of the server was reached. {hint}"
    message = " ".join(str(result.get("message") or "").split())
    return f"{read}{': ' + message if message else ''}"
