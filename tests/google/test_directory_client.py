"""GoogleDirectory against the sandbox: paging, queries, nested groups, refusals."""

from __future__ import annotations

import pytest

from syncd.errors import ConfigError
from syncd.google.directory import GoogleDirectory
from syncd.google.errors import GoogleAPIError
from tests.support.sandbox import DOMAIN, RunningSandbox

from .conftest import FAST_RETRY


def test_users_over_many_pages(sandbox: RunningSandbox) -> None:
    directory = GoogleDirectory(sandbox.google_config(), retry=FAST_RETRY)
    users = directory.list_users(query="isSuspended=false", page_size=7)
    assert len(users) == 55
    assert sandbox.requests("directory.users.list") == 8
    sales = directory.list_users(query="orgUnitPath='/Sales'", custom_schemas=["Employment"])
    assert [u["customSchemas"]["Employment"]["costCenter"] for u in sales] == ["42", "7"]


def test_nested_group_members(sandbox: RunningSandbox) -> None:
    directory = GoogleDirectory(sandbox.google_config(), retry=FAST_RETRY)
    members = directory.list_members(f"all@{DOMAIN}", page_size=2)
    users = sorted(m["email"] for m in members if m["type"] == "USER")
    assert users == [f"alice@{DOMAIN}", f"bob@{DOMAIN}", f"carol@{DOMAIN}"]


def test_non_admin_subject_is_refused(sandbox: RunningSandbox) -> None:
    cfg = sandbox.google_config(admin_subject=f"bob@{DOMAIN}")
    with pytest.raises(GoogleAPIError) as caught:
        GoogleDirectory(cfg, retry=FAST_RETRY).list_users()
    assert str(caught.value) == (
        f"Directory refused users.list for bob@{DOMAIN}: 403 PERMISSION_DENIED: "
        "Not Authorized to access this resource/api"
    )
    with pytest.raises(ConfigError, match="admin_subject"):
        GoogleDirectory(sandbox.google_config(admin_subject=None))
