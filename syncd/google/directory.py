"""The Directory client: users.list and members.list (all pages), as the configured
administrator (``google.admin_subject``), with the same retries and rate limit as Gmail."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from syncd.config import GoogleConfig
from syncd.errors import ConfigError
from syncd.google.credentials import DIRECTORY_SCOPES
from syncd.google.retry import RetryPolicy
from syncd.google.session import GoogleSession

USERS_PAGE = 500
MEMBERS_PAGE = 200


class GoogleDirectory:
    def __init__(
        self,
        cfg: GoogleConfig,
        *,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not cfg.admin_subject:
            raise ConfigError(
                "google.admin_subject",
                "set the administrator whom the service account impersonates for Directory reads",
            )
        self.admin: str = cfg.admin_subject
        self.session = GoogleSession(
            cfg, ("admin", "directory_v1"), "Directory", DIRECTORY_SCOPES, retry=retry, sleep=sleep
        )

    def list_users(
        self,
        *,
        query: str | None = None,
        domain: str | None = None,
        custom_schemas: Sequence[str] = (),
        page_size: int = USERS_PAGE,
    ) -> list[dict[str, Any]]:
        """Every user matching ``query`` (Directory query syntax) in the customer or domain."""
        params: dict[str, Any] = {"maxResults": page_size}
        params.update({"domain": domain} if domain else {"customer": "my_customer"})
        if query:
            params["query"] = query
        if custom_schemas:
            params.update(projection="custom", customFieldMask=",".join(custom_schemas))
        return self.session.all_pages(
            "users.list", self.admin, "users", lambda s, t: s.users().list(pageToken=t, **params)
        )

    def list_members(
        self, group_key: str, *, derived: bool = True, page_size: int = MEMBERS_PAGE
    ) -> list[dict[str, Any]]:
        """The group's members; with ``derived`` also those of nested groups."""
        return self.session.all_pages(
            "members.list",
            self.admin,
            "members",
            lambda s, t: s.members().list(
                groupKey=group_key,
                includeDerivedMembership=derived,
                maxResults=page_size,
                pageToken=t,
            ),
        )
