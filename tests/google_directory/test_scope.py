"""Each scope rule of the google source, read over HTTP from the sandbox's Directory API."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from syncd.config import GoogleSourceConfig, parse_config
from syncd.directory import open_source
from syncd.directory.base import Snapshot, SourceError
from syncd.directory.google import GoogleSource
from syncd.errors import ConfigError
from tests.support.sandbox import RunningSandbox
from tests.support.testca import TestHierarchy

from .conftest import ALICE_ID, at, scope_groups, scope_users, source_for, start

NOW = datetime(2030, 1, 1, tzinfo=UTC)
READ_ONLY = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
)


def listed(snapshot: Snapshot) -> dict[str, bool]:
    """Local part -> enabled, for every user in the snapshot."""
    return {user.email.split("@")[0]: user.enabled for user in snapshot.users}


def skipped(snapshot: Snapshot) -> list[str]:
    return [entry.reason for entry in snapshot.skipped]


def test_org_unit_with_sub_units(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, org_units=["/Sales"]).read(NOW)
    assert listed(snapshot) == {"alice": True, "carol": True, "dave": False, "oscar": False}
    assert skipped(snapshot) == [f"{at('erin')}: mailbox not set up"]
    assert snapshot.source == "google" and snapshot.taken_at == NOW


def test_org_unit_without_sub_units(sandbox: RunningSandbox) -> None:
    scope = {"org_units": [{"path": "/Sales", "include_sub_units": False}, "/Engineering/"]}
    snapshot = source_for(sandbox, **scope).read(NOW)
    assert listed(snapshot) == {
        "alice": True,
        "dave": False,
        "oscar": False,
        "bob": True,
        "frank": True,
    }


def test_root_unit_selects_everyone(sandbox: RunningSandbox) -> None:
    everyone = {u["primaryEmail"].split("@")[0] for u in scope_users()} - {"erin"}
    assert set(listed(source_for(sandbox, org_units=["/"]).read(NOW))) == everyone
    only_root = source_for(sandbox, org_units=[{"path": "/", "include_sub_units": False}])
    assert listed(only_root.read(NOW)) == {}


def test_group_with_nested_group_and_external_members(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, groups=[at("cse")]).read(NOW)
    assert listed(snapshot) == {"alice": True, "bob": True, "frank": True}
    assert sorted(skipped(snapshot)) == [
        f"external member contractor@vendor.example of group {at('cse')}: "
        "not a user of the customer",
        f"external member partner@other.example of group {at('cse')}: not a user of the customer",
    ]
    nested_only = source_for(sandbox, groups=[at("platform")]).read(NOW)
    assert listed(nested_only) == {"frank": True}
    assert skipped(nested_only) == [
        f"external member contractor@vendor.example of group {at('platform')}: "
        "not a user of the customer"
    ]


def test_custom_schema_field(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, custom_schema_field="Security.cseEnabled=true").read(NOW)
    assert listed(snapshot) == {"gina": True}


def test_free_query(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, query="givenName:Ivan").read(NOW)
    assert listed(snapshot) == {"ivan": True}


def test_selectors_combine_as_a_union_each_user_once(sandbox: RunningSandbox) -> None:
    source = source_for(
        sandbox,
        org_units=["/Sales", "/Sales/EMEA"],
        groups=[at("cse")],
        custom_schema_field="Security.cseEnabled=true",
        query="email:ivan",
    )
    snapshot = source.read(NOW)
    assert listed(snapshot) == {
        "alice": True,
        "bob": True,
        "carol": True,
        "dave": False,
        "frank": True,
        "gina": True,
        "ivan": True,
        "oscar": False,
    }
    assert len(snapshot.skipped) == 3, skipped(snapshot)  # erin and the two outside addresses


def test_exclusions_can_be_turned_off(sandbox: RunningSandbox) -> None:
    keep_all = source_for(
        sandbox,
        org_units=["/Sales"],
        exclude_suspended=False,
        exclude_archived=False,
        exclude_without_mailbox=False,
    ).read(NOW)
    assert listed(keep_all) == {
        "alice": True,
        "carol": True,
        "dave": True,
        "erin": True,
        "oscar": True,
    }
    assert keep_all.skipped == ()
    only_archived = source_for(sandbox, org_units=["/Sales"], exclude_suspended=False)
    assert listed(only_archived.read(NOW))["dave"] is True
    assert listed(only_archived.read(NOW))["oscar"] is False


def test_stable_id_is_the_google_user_id(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, org_units=["/Sales"]).read(NOW)
    alice = snapshot.by_email()[at("alice")]
    assert alice.directory_id == ALICE_ID
    carol = snapshot.by_email()[at("carol")]
    assert carol.directory_id.isdigit() and len(carol.directory_id) == 21


def test_domain_restricts_users(sandbox: RunningSandbox) -> None:
    snapshot = source_for(sandbox, org_units=["/Sales"], domain="example.com").read(NOW)
    assert "alice" in listed(snapshot)
    with pytest.raises(SourceError) as caught:
        source_for(sandbox, org_units=["/Sales"], domain="other.example").read(NOW)
    assert str(caught.value) == (
        "google directory source: Directory refused users.list for admin@example.com: "
        "403 PERMISSION_DENIED: Not Authorized to access this resource/api"
    )


def test_unknown_group_is_a_source_failure(sandbox: RunningSandbox) -> None:
    with pytest.raises(SourceError, match=r"members\.list .*404"):
        source_for(sandbox, groups=[at("nobody")]).read(NOW)


def test_read_only_directory_scopes_are_enough(tmp_path: Path, hierarchy: TestHierarchy) -> None:
    """The service account is delegated only the two read-only scopes: the source reads; with
    one of them missing, the token is refused and the read is a source failure."""
    running = start(tmp_path / "ro", hierarchy, scope_users(), scope_groups(), scopes=READ_ONLY)
    try:
        snapshot = source_for(running, groups=[at("cse")], org_units=["/Sales"]).read(NOW)
        assert len(snapshot.users) == 6
    finally:
        running.stop()
    narrow = start(tmp_path / "narrow", hierarchy, scope_users(), [], scopes=READ_ONLY[:1])
    try:
        with pytest.raises(SourceError, match="unauthorized_client"):
            source_for(narrow, org_units=["/Sales"]).read(NOW)
    finally:
        narrow.stop()


def test_configuration_rules(sandbox: RunningSandbox) -> None:
    with pytest.raises(ConfigError, match=r"^directory\.google: .*at least one of org_units"):
        parse_config({"directory": {"source": "google", "google": {"domain": "example.com"}}})
    with pytest.raises(ConfigError, match=r"custom_schema_field: must read Schema\.field=value"):
        parse_config(
            {"directory": {"source": "google", "google": {"custom_schema_field": "cseEnabled"}}}
        )
    with pytest.raises(ConfigError, match=r"org_units\.0\.path: must be a full path"):
        parse_config({"directory": {"source": "google", "google": {"org_units": ["Sales"]}}})
    with pytest.raises(ConfigError, match=r"^directory\.google: required when"):
        parse_config({"directory": {"source": "google"}})
    with pytest.raises(ConfigError, match="admin_subject"):
        GoogleSource(GoogleSourceConfig(query="email:a"), sandbox.google_config(admin_subject=None))
    config = parse_config(
        {
            "directory": {"source": "google", "google": {"org_units": ["/Sales"]}},
            "google": sandbox.google_config().model_dump(exclude_none=True),
        }
    )
    source = open_source(config.directory, config.google)
    assert isinstance(source, GoogleSource)
    assert listed(source.read(NOW))["alice"] is True


def test_example_configuration_documents_the_schema() -> None:
    """The commented directory.google block of config/example.yaml, uncommented, is valid
    and names every key of GoogleSourceConfig."""
    text = (Path(__file__).parents[2] / "config" / "example.yaml").read_text()
    block = re.search(r"^  # google:\n((?:  #   .*\n)+)", text, re.MULTILINE)
    assert block is not None
    body = yaml.safe_load("".join(line[5:] + "\n" for line in block.group(1).splitlines()))
    assert set(body) == set(GoogleSourceConfig.model_fields)
    body["org_units"] = ["/Sales", {"path": "/Legal", "include_sub_units": False}]
    config = parse_config({"directory": {"source": "google", "google": body}})
    assert config.directory.google is not None
    assert [u.include_sub_units for u in config.directory.google.org_units] == [True, False]


def test_each_user_carries_its_org_unit_and_the_configured_groups_listing_it(
    sandbox: RunningSandbox,
) -> None:
    """What policy.rollout_order matches: orgUnitPath as Google gives it, and each configured
    group whose (derived) membership lists the user."""
    source = source_for(sandbox, org_units=["/Sales"], groups=[at("cse"), at("platform")])
    users = {u.email.split("@")[0]: (u.org_unit, u.groups) for u in source.read(NOW).users}
    assert users == {
        "alice": ("/Sales", (at("cse"),)),
        "bob": ("/Engineering", (at("cse"),)),
        "carol": ("/Sales/EMEA", ()),
        "dave": ("/Sales", ()),
        "frank": ("/Engineering/Platform", (at("cse"), at("platform"))),
        "oscar": ("/Sales", ()),
    }
