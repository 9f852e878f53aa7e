"""Changing the sandbox directory's users as an administrator would in the Admin console:
rename a user, delete one, create one. The admin endpoints ``users:rename``, ``users:delete``
and ``users:create`` (syncd.sandbox.app) call these.

As Google does: a renamed user keeps their id and their mailbox (key pairs and identities
included), and their old address stays as an alias that still reaches that mailbox. A deleted
user's mailbox goes with them, so a user created later with the same address (and a new id)
starts with an empty mailbox. The directory file is rewritten in its own format.
"""

from __future__ import annotations

import threading
from typing import Any

from pydantic import ValidationError

from syncd.sandbox.errors import ApiError, already_exists, invalid, not_found
from syncd.sandbox.store import DirectoryData, DirectoryUser, Store

_LOCK = threading.Lock()
"""One directory change at a time (read, change, write)."""


def _editable(store: Store) -> DirectoryData:
    """A copy of the directory to change (the store's own stays as read until written)."""
    return DirectoryData.model_validate(store.directory().model_dump())


def _address(value: object, name: str) -> str:
    if not isinstance(value, str) or "@" not in value:
        raise invalid(f"Give {name} as an email address.")
    return value.strip()


def _taken(store: Store, address: str) -> None:
    holder = store.directory().user(address)
    if holder is not None:
        raise already_exists(f"{address} is already used by the user {holder.primaryEmail}.")


def rename_user(store: Store, old: str, new: str) -> DirectoryUser:
    """Give the user at ``old`` the primary address ``new``; same id, same mailbox."""
    with _LOCK:
        directory = _editable(store)
        user = directory.user(old)
        if user is None or user.primaryEmail.lower() != old.lower():
            raise not_found(f"No user has the primary address {old}.")
        _taken(store, new)
        user.id = user.user_id  # pinned: an id derived from the address would change with it
        user.aliases = [*user.aliases, user.primaryEmail]
        user.primaryEmail = new
        store.mailboxes.move(old, new)
        store.write_directory(directory)
        return user


def delete_user(store: Store, email: str) -> DirectoryUser:
    """Delete the user whose primary address is ``email``, and their mailbox."""
    with _LOCK:
        directory = _editable(store)
        user = directory.user(email)
        if user is None or user.primaryEmail.lower() != email.lower():
            raise not_found(f"No user has the primary address {email}.")
        directory.users.remove(user)
        store.write_directory(directory)
        store.mailboxes.drop(user.primaryEmail)
        return user


def create_user(store: Store, record: dict[str, Any]) -> DirectoryUser:
    """Add a user (Directory API fields); their mailbox starts empty."""
    try:
        user = DirectoryUser.model_validate(record)
    except ValidationError as error:
        raise invalid(f"Not a user record: {error.errors()[0]['msg']}") from None
    with _LOCK:
        directory = _editable(store)
        _taken(store, user.primaryEmail)
        for alias in user.aliases:
            _taken(store, alias)
        directory.users.append(user)
        store.mailboxes.drop(user.primaryEmail)  # a mailbox left by a file edit is not theirs
        store.write_directory(directory)
        return user


def admin_rename(store: Store, body: Any) -> dict[str, Any]:
    """``POST users:rename`` ``{"from": old, "to": new}``."""
    data = body if isinstance(body, dict) else {}
    user = rename_user(store, _address(data.get("from"), "from"), _address(data.get("to"), "to"))
    return _summary(user)


def admin_delete(store: Store, body: Any) -> dict[str, Any]:
    """``POST users:delete`` ``{"email": address}``."""
    data = body if isinstance(body, dict) else {}
    return _summary(delete_user(store, _address(data.get("email"), "email")))


def admin_create(store: Store, body: Any) -> dict[str, Any]:
    """``POST users:create`` with a user record (primaryEmail, id, ...)."""
    if not isinstance(body, dict):
        raise ApiError(400, "Give the user record as a JSON object.", reason="badRequest")
    return _summary(create_user(store, body))


def _summary(user: DirectoryUser) -> dict[str, Any]:
    return {"id": user.user_id, "primaryEmail": user.primaryEmail, "aliases": user.aliases}
