"""The API methods the sandbox serves: HTTP verb, path, Google's method name, the scopes a
token must carry, and the handler. Paths are those of the discovery documents shipped with
google-api-python-client (gmail v1, admin directory_v1).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import syncd.sandbox.directory as directory
import syncd.sandbox.gmail as gmail
from syncd.sandbox.context import Call, Reply, Services
from syncd.sandbox.errors import ApiError, not_found

Handler = Callable[[Services, Call], Reply]

_AUTH = "https://www.googleapis.com/auth/"
GMAIL_WRITE = frozenset({_AUTH + "gmail.settings.basic", _AUTH + "gmail.settings.sharing"})
GMAIL_READ = GMAIL_WRITE | {
    "https://mail.google.com/",
    _AUTH + "gmail.modify",
    _AUTH + "gmail.readonly",
}
DIRECTORY_USERS = frozenset(
    {
        _AUTH + "admin.directory.user",
        _AUTH + "admin.directory.user.readonly",
        _AUTH + "cloud-platform",
    }
)
DIRECTORY_MEMBERS = frozenset(
    {
        _AUTH + "admin.directory.group",
        _AUTH + "admin.directory.group.member",
        _AUTH + "admin.directory.group.member.readonly",
        _AUTH + "admin.directory.group.readonly",
    }
)


@dataclass(frozen=True)
class Route:
    verb: str
    pattern: re.Pattern[str]
    name: str
    scopes: frozenset[str]
    handler: Handler

    @property
    def writes(self) -> bool:
        return self.verb != "GET"


def _path(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/:]+)", template)
    return re.compile("^/" + regex + "$")


_CSE = "gmail/v1/users/{userId}/settings/cse/"
_KP = "gmail.users.settings.cse.keypairs."
_ID = "gmail.users.settings.cse.identities."

ROUTES: list[Route] = [
    Route("POST", _path(_CSE + "keypairs"), _KP + "create", GMAIL_WRITE, gmail.create_keypair),
    Route("GET", _path(_CSE + "keypairs"), _KP + "list", GMAIL_READ, gmail.list_keypairs),
    Route("GET", _path(_CSE + "keypairs/{keyPairId}"), _KP + "get", GMAIL_READ, gmail.get_keypair),
    Route(
        "POST",
        _path(_CSE + "keypairs/{keyPairId}:disable"),
        _KP + "disable",
        GMAIL_WRITE,
        gmail.disable_keypair,
    ),
    Route(
        "POST",
        _path(_CSE + "keypairs/{keyPairId}:enable"),
        _KP + "enable",
        GMAIL_WRITE,
        gmail.enable_keypair,
    ),
    Route(
        "POST",
        _path(_CSE + "keypairs/{keyPairId}:obliterate"),
        _KP + "obliterate",
        GMAIL_WRITE,
        gmail.obliterate_keypair,
    ),
    Route("POST", _path(_CSE + "identities"), _ID + "create", GMAIL_WRITE, gmail.create_identity),
    Route("GET", _path(_CSE + "identities"), _ID + "list", GMAIL_READ, gmail.list_identities),
    Route(
        "GET",
        _path(_CSE + "identities/{cseEmailAddress}"),
        _ID + "get",
        GMAIL_READ,
        gmail.get_identity,
    ),
    Route(
        "DELETE",
        _path(_CSE + "identities/{cseEmailAddress}"),
        _ID + "delete",
        GMAIL_WRITE,
        gmail.delete_identity,
    ),
    Route(
        "PATCH",
        _path(_CSE + "identities/{emailAddress}"),
        _ID + "patch",
        GMAIL_WRITE,
        gmail.patch_identity,
    ),
    Route(
        "GET",
        _path("admin/directory/v1/users"),
        "directory.users.list",
        DIRECTORY_USERS,
        directory.list_users,
    ),
    Route(
        "GET",
        _path("admin/directory/v1/groups/{groupKey}/members"),
        "directory.members.list",
        DIRECTORY_MEMBERS,
        directory.list_members,
    ),
]


def find_route(verb: str, raw_path: str) -> tuple[Route, dict[str, str]]:
    """The route for a request and its percent-decoded path parameters; 404/405 otherwise."""
    path_matched = False
    for route in ROUTES:
        match = route.pattern.match(raw_path)
        if match is None:
            continue
        path_matched = True
        if route.verb == verb:
            params = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return route, params
    if path_matched:
        raise ApiError(405, f"Method {verb} is not allowed on {raw_path}.")
    raise not_found(f"The requested URL {raw_path} was not found on this server.")
