"""The ``directory`` section: where the users come from, a tagged union on ``source``.

``source: static`` needs ``static:``, ``source: google`` needs ``google:`` and ``source: ldap``
needs ``ldap:``; the types say so (:class:`LdapDirectory` always has its ``ldap`` settings).
A file without a directory section at all (an installation that only issues certificates by
hand) reads as :class:`NoDirectory`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    GetJsonSchemaHandler,
    Tag,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from syncd.config.base import Section
from syncd.config.secrets import SecretRef
from syncd.config.types import ConfigPath, Duration


class StaticSourceConfig(Section):
    """A file listing the users."""

    path: ConfigPath
    """YAML or CSV file of users (email, id, enabled)."""


_CUSTOM_FIELD = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*=\S.*$")


class OrgUnitScope(Section):
    """One organisational unit in scope (a plain path is short for ``{path: ...}``)."""

    path: str
    """Full organisational unit path, ``/`` for the whole organisation."""
    include_sub_units: bool = True
    """Take the units under it too."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must be a full path starting with / (for example /Sales)")
        return path.rstrip("/") or "/"


class GoogleSourceConfig(Section):
    """Who is in scope in the Google Directory; credentials come from the ``google`` section."""

    org_units: list[OrgUnitScope] = []
    """Organisational units in scope (``/`` is everyone)."""
    groups: list[str] = []
    """Groups (email or id) whose members are in scope, nested groups included."""
    custom_schema_field: str | None = None
    """``Schema.field=value``, for example ``Security.cseEnabled=true``."""
    query: str | None = None
    """A free users.list query (``isAdmin=false orgUnitPath='/Paris'``)."""
    domain: str | None = None
    """Only users of this domain (default: every domain of the customer)."""
    exclude_suspended: bool = True
    """Suspended users count as disabled (deprovisioned); false: they keep CSE."""
    exclude_archived: bool = True
    """Archived users count as disabled (deprovisioned); false: they keep CSE."""
    exclude_without_mailbox: bool = True
    """Users without a Gmail mailbox are left out of scope."""

    @field_validator("org_units", mode="before")
    @classmethod
    def _unit_shorthand(cls, units: Any) -> Any:
        if isinstance(units, list):
            return [{"path": unit} if isinstance(unit, str) else unit for unit in units]
        return units

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        units = handler.resolve_ref_schema(schema)["properties"]["org_units"]
        shorthand = {"type": "string", "pattern": "^/", "description": "Short for {path: ...}."}
        units["items"] = {"anyOf": [units["items"], shorthand]}
        return schema

    @field_validator("custom_schema_field")
    @classmethod
    def _schema_field(cls, value: str | None) -> str | None:
        if value is not None and not _CUSTOM_FIELD.match(value.strip()):
            raise ValueError("must read Schema.field=value, for example Security.cseEnabled=true")
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _some_selector(self) -> GoogleSourceConfig:
        if not (self.org_units or self.groups or self.custom_schema_field or self.query):
            raise ValueError(
                "select users with at least one of org_units, groups, custom_schema_field, "
                "query (org_units: [/] selects everyone)"
            )
        return self


LDAP_USER_FILTERS = {
    "openldap": "(objectClass=person)",
    "active_directory": "(&(objectCategory=person)(objectClass=user))",
}
"""A search rule's default filter by flavor (AD: user accounts, not contacts or computers)."""


class LdapSearchRule(Section):
    """One subtree (or entry, or level) searched for users."""

    base_dn: str
    """Where the search starts."""
    scope: Literal["base", "one", "sub"] = "sub"
    """base: the entry only; one: its children; sub: the whole subtree."""
    filter: str = LDAP_USER_FILTERS["openldap"]
    """The LDAP filter of user entries; default by flavor (see LDAP_USER_FILTERS)."""


def _default_rule_filters(values: Any) -> Any:
    """Search rules without a filter get their flavor's default one."""
    if not isinstance(values, Mapping) or not isinstance(values.get("search"), list):
        return values
    flavor = values.get("flavor", "openldap")
    default = LDAP_USER_FILTERS.get(flavor) if isinstance(flavor, str) else None
    if default is None:
        return values
    rules = [
        {**rule, "filter": default} if isinstance(rule, Mapping) and "filter" not in rule else rule
        for rule in values["search"]
    ]
    return {**values, "search": rules}


class LdapGroupRule(Section):
    """A group whose members are in scope."""

    dn: str
    """The group's distinguished name."""
    nested: bool = True
    """Members of member groups too (AD: the in-chain matching rule; elsewhere, expanded)."""


class LdapSourceConfig(Section):
    """An OpenLDAP or Active Directory server; see config/example.yaml for every key."""

    servers: list[str] = Field(min_length=1)
    """``ldaps://host[:port]`` or ``ldap://host[:port]``, tried in order (failover)."""
    start_tls: bool = False
    """Upgrade ldap:// connections with StartTLS before binding."""
    ca_file: ConfigPath | None = None
    """PEM bundle of the CAs to trust for the server (default: the system's)."""
    tls_verify: bool = True
    """Check the server certificate and its host name; off only when set to false."""
    allow_plaintext: bool = False
    """Allow ldap:// without StartTLS (the password and the directory travel in clear)."""
    bind_dn: str | None = None
    """The DN syncd binds as (a read-only service account); none: an anonymous bind."""
    bind_password: SecretRef | None = None
    """The bind password of bind_dn."""
    connect_timeout: Duration = 10.0
    """How long connecting to one server may take before the next is tried."""
    operation_timeout: Duration = 120.0
    """How long one LDAP operation (a page of a search) may take."""
    page_size: int = Field(default=500, ge=1, le=100_000)
    """Entries per page of a paged search (Simple Paged Results)."""
    flavor: Literal["openldap", "active_directory"] = "openldap"
    """Decides the default filter, the stable id attribute and how nested groups are read."""
    search: list[LdapSearchRule] = Field(min_length=1)
    """Where users are searched for; a user found by several rules counts once."""
    groups: list[LdapGroupRule] = []
    """When set, only users the search rules find AND who are members of one of these."""
    member_attribute: str = "member"
    """Besides member, uniqueMember and memberUid (always read): another DN-valued attribute."""
    group_filter: str = (
        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)"
        "(objectClass=group))"
    )
    """What a group entry is, when nested groups are expanded."""
    group_base_dns: list[str] = []
    """Where member groups of nested groups are looked for; default: the groups' suffix."""
    email_attribute: str = "mail"
    """The attribute holding the user's email address."""
    mail_domains: list[str] = []
    """With several email values: prefer one in these domains (first listed first); then
    the lowest address. See ``choose_email``."""
    aliases_attribute: str | None = None
    """Where the user's aliases are read (for ``certificate.include_aliases``); none: the
    other values of email_attribute. Active Directory's proxyAddresses works: its ``smtp:``
    values are taken, other address types (X500:, SIP:...) are left out."""
    id_attribute: str | None = None
    """Default: entryUUID (openldap) or objectGUID (active_directory)."""
    disabled_attribute: str | None = None
    """An attribute marking disabled users (none: every user found is enabled)."""
    disabled_values: list[str] = []
    """Values of disabled_attribute meaning "disabled" (case-insensitive); none: any value."""

    _filters = model_validator(mode="before")(_default_rule_filters)

    @field_validator("servers")
    @classmethod
    def _urls(cls, servers: list[str]) -> list[str]:
        for number, url in enumerate(servers):
            scheme, _, rest = url.strip().partition("://")
            if scheme.lower() not in ("ldap", "ldaps") or not rest.strip("/"):
                raise ValueError(f"servers.{number}: {url!r} must read ldaps://host[:port]")
        return [url.strip() for url in servers]

    @model_validator(mode="after")
    def _transport(self) -> LdapSourceConfig:
        for number, url in enumerate(self.servers):
            ldaps = url.lower().startswith("ldaps://")  # start_tls concerns ldap:// servers
            if not ldaps and not self.start_tls and not self.allow_plaintext:
                raise ValueError(
                    f"servers.{number}: {url} would send the password and the directory in "
                    "clear; use ldaps://, start_tls: true, or set allow_plaintext: true"
                )
        if self.bind_password is not None and not self.bind_dn:
            raise ValueError("bind_dn is required with a bind password")
        return self

    @property
    def stable_id_attribute(self) -> str:
        if self.id_attribute:
            return self.id_attribute
        return "objectGUID" if self.flavor == "active_directory" else "entryUUID"


# --- the tagged union -------------------------------------------------------------------

_STATIC = "The users file, used when source is static."
_GOOGLE = "Who is in scope in the Google Workspace Directory, used when source is google."
_LDAP = "The OpenLDAP or Active Directory server, used when source is ldap."


class StaticDirectory(Section):
    """Users from a YAML or CSV file (``source: static``)."""

    source: Literal["static"] = "static"
    """Where the users who must have CSE come from: static, google or ldap."""
    static: StaticSourceConfig = Field(description=_STATIC)
    google: GoogleSourceConfig | None = Field(default=None, description=_GOOGLE)
    ldap: LdapSourceConfig | None = Field(default=None, description=_LDAP)


class GoogleDirectory(Section):
    """Users from the Google Workspace Directory (``source: google``)."""

    source: Literal["google"]
    """Where the users who must have CSE come from: static, google or ldap."""
    static: StaticSourceConfig | None = Field(default=None, description=_STATIC)
    google: GoogleSourceConfig = Field(description=_GOOGLE)
    ldap: LdapSourceConfig | None = Field(default=None, description=_LDAP)


class LdapDirectory(Section):
    """Users from OpenLDAP or Active Directory (``source: ldap``)."""

    source: Literal["ldap"]
    """Where the users who must have CSE come from: static, google or ldap."""
    static: StaticSourceConfig | None = Field(default=None, description=_STATIC)
    google: GoogleSourceConfig | None = Field(default=None, description=_GOOGLE)
    ldap: LdapSourceConfig = Field(description=_LDAP)


def _hide_implied_keys(schema: dict[str, Any]) -> None:
    """In the schema, a NoDirectory has neither ``source`` nor ``static``."""
    for key in ("source", "static"):
        schema["properties"].pop(key, None)


class NoDirectory(Section):
    """No directory configured (neither ``source`` nor ``static``): certificates by hand."""

    model_config = ConfigDict(json_schema_extra=_hide_implied_keys)

    source: Literal["static"] = "static"
    """Always static (the default source), without its section."""
    static: None = None
    """Absent."""
    google: GoogleSourceConfig | None = Field(default=None, description=_GOOGLE)
    ldap: LdapSourceConfig | None = Field(default=None, description=_LDAP)


SOURCES = ("static", "google", "ldap")
"""The values of ``directory.source``."""


def _source_tag(value: Any) -> str:
    if isinstance(value, NoDirectory):
        return "none"
    if isinstance(value, Section):
        return str(getattr(value, "source", "none"))
    if not isinstance(value, Mapping):
        return "none"
    if "source" not in value:
        return "static" if value.get("static") is not None else "none"
    source = value["source"]
    return source if isinstance(source, str) else repr(source)


DirectoryConfig = Annotated[
    Annotated[StaticDirectory, Tag("static")]
    | Annotated[GoogleDirectory, Tag("google")]
    | Annotated[LdapDirectory, Tag("ldap")]
    | Annotated[NoDirectory, Tag("none")],
    Discriminator(_source_tag),
]
"""The ``directory`` section: one variant per ``source``."""
