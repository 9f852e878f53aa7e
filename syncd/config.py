"""The configuration file: its typed schema, validation, and secret references.

One YAML file describes a syncd installation. Every section has defaults, so a missing section
means "the defaults"; an unknown key, a wrong type or a missing referenced file is an error that
names the dotted key path (``kms.local.master_key_file: file not found: ...``).

Relative paths in the file are taken relative to the file's own folder.

A secret ``X`` may be given inline (``X``), as a file path (``X_file``) or as the name of an
environment variable (``X_env``); at most one of the three. Secrets are read only when used
(:func:`read_secret`), and never appear in :func:`redacted_summary`.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from syncd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.yaml")
CONFIG_ENV_VAR = "SYNCD_CONFIG"


def _resolve_relative(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if base is not None and not value.is_absolute():
        return Path(os.path.normpath(Path(base) / value))
    return value


ConfigPath = Annotated[Path, AfterValidator(_resolve_relative)]
"""A path in the configuration; relative paths are relative to the configuration file."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: int | float | str) -> float:
    """Seconds from ``90``, ``"90s"``, ``"10m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 10m, 2h, 1d)")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError("must be more than zero")
    return seconds


Duration = Annotated[float, Field(description="seconds, or a string such as 10m")]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_one_source(values: Any, name: str) -> Any:
    if isinstance(values, Mapping):
        given = [key for key in (name, f"{name}_file", f"{name}_env") if values.get(key)]
        if len(given) > 1:
            raise ValueError(f"give only one of {', '.join(given)}")
    return values


# --- sections -----------------------------------------------------------------------------


def _check_port(url: str) -> None:
    """ValueError (never echoing the URL, which may hold a password) for a port that is not
    a number or not a TCP port."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        port = make_url(url).port
    except (ArgumentError, ValueError):
        raise ValueError(
            "cannot parse the database URL (is the port a number?); expected "
            "sqlite:///path.db or postgresql://user@host[:port]/dbname"
        ) from None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is not a TCP port (1-65535)")


class StateConfig(_Section):
    url: str = "sqlite:////var/lib/syncd/state.db"
    """SQLAlchemy URL: sqlite:///relative.db, sqlite:////absolute.db or postgresql+psycopg://..."""
    lock_file: ConfigPath | None = None
    """SQLite only: the run-lock file (default: the database file plus ``.lock``)."""

    @field_validator("url")
    @classmethod
    def _known_dialect(cls, url: str, info: ValidationInfo) -> str:
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+")):
            raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
        _check_port(url)
        relative_file = url.removeprefix("sqlite:///")
        if (
            url.startswith("sqlite:///")
            and relative_file
            and not relative_file.startswith(("/", ":memory:"))
        ):
            return f"sqlite:///{_resolve_relative(Path(relative_file), info)}"
        return url


class StaticSourceConfig(_Section):
    path: ConfigPath
    """YAML or CSV file of users (email, id, enabled)."""


_CUSTOM_FIELD = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_]\w*=\S.*$")


class OrgUnitScope(_Section):
    path: str
    """Full organisational unit path, ``/`` for the whole organisation."""
    include_sub_units: bool = True

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must be a full path starting with / (for example /Sales)")
        return path.rstrip("/") or "/"


class GoogleSourceConfig(_Section):
    """Who is in scope in the Google Directory; credentials come from the ``google`` section."""

    org_units: list[OrgUnitScope] = []
    groups: list[str] = []
    custom_schema_field: str | None = None
    """``Schema.field=value``, for example ``Security.cseEnabled=true``."""
    query: str | None = None
    """A free users.list query (``isAdmin=false orgUnitPath='/Paris'``)."""
    domain: str | None = None
    """Only users of this domain (default: every domain of the customer)."""
    exclude_suspended: bool = True
    exclude_archived: bool = True
    exclude_without_mailbox: bool = True

    @field_validator("org_units", mode="before")
    @classmethod
    def _unit_shorthand(cls, units: Any) -> Any:
        if isinstance(units, list):
            return [{"path": unit} if isinstance(unit, str) else unit for unit in units]
        return units

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


class LdapSearchRule(_Section):
    base_dn: str
    scope: Literal["base", "one", "sub"] = "sub"
    filter: str = LDAP_USER_FILTERS["openldap"]
    """Default by flavor: see LDAP_USER_FILTERS."""


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


class LdapGroupRule(_Section):
    dn: str
    nested: bool = True
    """Members of member groups too (AD: the in-chain matching rule; elsewhere, expanded)."""


class LdapSourceConfig(_Section):
    """An OpenLDAP or Active Directory server; see config/example.yaml for every key."""

    servers: list[str] = Field(min_length=1)
    """``ldaps://host[:port]`` or ``ldap://host[:port]``, tried in order (failover)."""
    start_tls: bool = False
    ca_file: ConfigPath | None = None
    tls_verify: bool = True
    """Check the server certificate and its host name; off only when set to false."""
    allow_plaintext: bool = False
    bind_dn: str | None = None
    bind_password: str | None = None
    bind_password_file: ConfigPath | None = None
    bind_password_env: str | None = None
    connect_timeout: Duration = 10.0
    operation_timeout: Duration = 120.0
    page_size: int = Field(default=500, ge=1, le=100_000)
    flavor: Literal["openldap", "active_directory"] = "openldap"
    search: list[LdapSearchRule] = Field(min_length=1)
    groups: list[LdapGroupRule] = []
    """When set, only users the search rules find AND who are members of one of these."""
    member_attribute: str = "member"
    """Besides member, uniqueMember and memberUid (always read): another DN-valued attribute."""
    group_filter: str = (
        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)"
        "(objectClass=group))"
    )
    group_base_dns: list[str] = []
    """Where member groups of nested groups are looked for; default: the groups' suffix."""
    email_attribute: str = "mail"
    mail_domains: list[str] = []
    """With several email values: prefer one in these domains (first listed first); then
    the lowest address. See ``choose_email``."""
    id_attribute: str | None = None
    """Default: entryUUID (openldap) or objectGUID (active_directory)."""
    disabled_attribute: str | None = None
    disabled_values: list[str] = []
    """Values of disabled_attribute meaning "disabled" (case-insensitive); none: any value."""

    _one = model_validator(mode="before")(lambda v: _check_one_source(v, "bind_password"))
    _filters = model_validator(mode="before")(_default_rule_filters)
    _durations = field_validator("connect_timeout", "operation_timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

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
        given = self.bind_password or self.bind_password_file or self.bind_password_env
        if given and not self.bind_dn:
            raise ValueError("bind_dn is required with a bind password")
        return self

    @property
    def stable_id_attribute(self) -> str:
        if self.id_attribute:
            return self.id_attribute
        return "objectGUID" if self.flavor == "active_directory" else "entryUUID"


class DirectoryConfig(_Section):
    source: Literal["static", "google", "ldap"] = "static"
    static: StaticSourceConfig | None = None
    google: GoogleSourceConfig | None = None
    ldap: LdapSourceConfig | None = None

    def missing_section(self) -> ConfigError | None:
        """The error for a ``source`` named explicitly without its section (``source: ldap``
        and no ``ldap:``); None otherwise. A file without a directory section at all (an
        installation that only issues certificates by hand) is not refused here."""
        if "source" in self.model_fields_set and getattr(self, self.source) is None:
            return ConfigError(
                f"directory.{self.source}",
                f"required when directory.source is {self.source}; the section is missing",
            )
        return None


class LocalKMSConfig(_Section):
    master_key_file: ConfigPath = Path("/var/lib/syncd/master.key")
    """32 random bytes, mode 0600, created by ``syncd init``."""


class KmipConfig(_Section):
    """An external KMS spoken to over KMIP (``kms.backend: kmip``)."""

    transport: Literal["binary", "json"] = "binary"
    """binary: TTLV over TLS with a client certificate (any KMIP server, port 5696);
    json: Cosmian KMS's JSON TTLV posted over HTTPS to ``<url>/kmip/2_1``."""
    host: str | None = None
    """binary: the KMIP server's host name (checked against its certificate)."""
    port: int = Field(default=5696, ge=1, le=65535)
    url: str | None = None
    """json: the KMS's base URL, e.g. ``https://kms.example.com:9998``."""
    client_certificate_file: ConfigPath | None = None
    client_key_file: ConfigPath | None = None
    """The client certificate (clientAuth) and its key, PEM: required for binary, optional for
    json (where a bearer token may be used instead)."""
    ca_file: ConfigPath | None = None
    """PEM trust anchors for the server's certificate; default: the system's."""
    verify_tls: bool = True
    """Check the server's certificate and host name; off only when set to false (json only)."""
    token: str | None = None
    token_file: ConfigPath | None = None
    token_env: str | None = None
    """json: a bearer token for Cosmian KMS's authentication (at most one of the three)."""
    timeout: Duration = 30.0
    """Seconds for one KMIP operation, connection included."""
    server_side_wrap: Literal["auto", "always", "never"] = "auto"
    """kaclsData made by the KMS (KMIP Get with a key wrapping specification, the key
    ``kacls.kms_key_id``, AES-GCM) or by syncd with ``kacls.wrapping_key``. auto: the KMS when
    it can, else syncd (``syncd kms test`` says which)."""
    signing: Literal["auto", "sign", "certify"] = "auto"
    """How certificates are signed by the issuer key in the KMS: KMIP Sign over the
    to-be-signed bytes, or KMIP Certify (Cosmian releases without Sign). auto: Sign when offered."""

    _one = model_validator(mode="before")(lambda v: _check_one_source(v, "token"))
    _durations = field_validator("timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/") if url is not None else None


class KMSConfig(_Section):
    backend: Literal["local", "kmip"] = "local"
    local: LocalKMSConfig = LocalKMSConfig()
    kmip: KmipConfig = KmipConfig()


class KACLSConfig(_Section):
    uri: str | None = None
    """The KACLS URL Gmail calls to unwrap private keys (Cosmian: public URL + /google_cse)."""
    wrapping_key: str | None = None
    wrapping_key_file: ConfigPath | None = None
    wrapping_key_env: str | None = None
    """The AES-256 key that wraps private keys for the KACLS: 32 raw bytes or their base64."""
    kms_key_id: str = "google_cse"
    """The id, in an external KMS, of the AES key the KACLS unwraps kaclsData with (Cosmian:
    ``google_cse``): the wrapping key when the KMS wraps (``kms.kmip.server_side_wrap``)."""
    private_key_format: Literal["pkcs1", "pkcs8"] = "pkcs1"
    """What kaclsData holds once unwrapped: a PKCS#1 RSAPrivateKey (what Cosmian's KACLS
    parses on every route) or a PKCS#8 PrivateKeyInfo (syncd before issue 12)."""

    _one = model_validator(mode="before")(lambda v: _check_one_source(v, "wrapping_key"))

    @field_validator("uri")
    @classmethod
    def _url(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return uri


class CAConfig(_Section):
    label: str = "default"
    """Which imported issuing CA signs user certificates."""


class CertificateConfig(_Section):
    key_bits: Literal[2048, 3072, 4096] = 3072
    hash: Literal["sha256", "sha384", "sha512"] = "sha256"
    validity_days: int = Field(default=365, ge=1, le=3650)
    renew_before_days: int = Field(default=30, ge=1)
    subject_template: str = "CN={email}"
    """RFC 4514 distinguished name; {email}, {local_part} and {domain} are filled in."""
    crl_distribution_points: list[str] = []
    aia_ca_issuers: list[str] = []
    aia_ocsp: list[str] = []
    extensions_file: ConfigPath | None = None
    """OpenSSL-style extensions file whose [v3_ca] section replaces the default extensions."""

    @field_validator("subject_template")
    @classmethod
    def _template_fields(cls, template: str) -> str:
        allowed = {"email", "local_part", "domain"}
        used = set(re.findall(r"{(\w*)}", template))
        if not used <= allowed:
            unknown = ", ".join(sorted(used - allowed))
            raise ValueError(
                f"unknown placeholder {unknown}; use {{email}}, {{local_part}}, {{domain}}"
            )
        return template


class GoogleConfig(_Section):
    service_account_key: str | None = None
    service_account_key_file: ConfigPath | None = None
    service_account_key_env: str | None = None
    endpoint: str | None = None
    """Overrides the API endpoint (the sandbox); the key file's token_uri overrides OAuth's."""
    admin_subject: str | None = None
    requests_per_second: float = Field(default=10.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    """Retries of one request outside a pipeline step (commands, directory reads); inside a
    step, the step's budget (pipeline.step_retries, pipeline.step_time_limit) applies."""
    max_retry_after: Duration = 60.0
    """Longest ``Retry-After`` waited for; a longer one is a transient failure retried later."""
    timeout_seconds: float = Field(default=60.0, gt=0)

    _one = model_validator(mode="before")(lambda v: _check_one_source(v, "service_account_key"))
    _durations = field_validator("max_retry_after", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )


class PipelineConfig(_Section):
    workers: int = Field(default=4, ge=1, le=64)
    step_attempts: int = Field(default=5, ge=1)
    """Runs of one step within a pass (each run after the first is charged to the budget)."""
    step_retries: int = Field(default=4, ge=0)
    """A step's retry budget: requests re-sent by the Google client and runs of the step by
    the runner, together; a step sends at most the requests it needs plus this many."""
    step_time_limit: Duration = 120.0
    """No retry wait starts that would end later than this after the step began."""
    retry_initial: Duration = 60.0
    retry_max: Duration = 6 * 3600.0
    claim_lease: Duration = 600.0
    """How long a running task stays claimed by its pass after its last checkpoint: another
    process leaves it alone until then. Longer than any one attempt of a step can take."""

    _durations = field_validator(
        "step_time_limit", "retry_initial", "retry_max", "claim_lease", mode="before"
    )(
        classmethod(lambda cls, v: parse_duration(v))
    )


class PolicyConfig(_Section):
    max_deprovision: str = "10%"
    """A count (``25``) or a percentage of active users (``10%``)."""
    obliterate_after_days: int | None = Field(default=None, ge=31)
    """Opt-in: obliterate disabled key pairs after this many days (Google requires > 30)."""
    deprovision_after: Duration = 3600.0
    """Grace period: a user missing from the directory is deprovisioned only once every read
    for this long has missed them (0: at the first read that misses them). A user disabled or
    suspended in the directory is deprovisioned at once."""

    @field_validator("deprovision_after", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
            return 0.0
        if isinstance(value, str) and re.fullmatch(r"\s*0+(?:\.0+)?\s*[smhd]?\s*", value):
            return 0.0
        return parse_duration(value)

    @field_validator("max_deprovision", mode="before")
    @classmethod
    def _count_or_percent(cls, value: Any) -> str:
        text = str(value).strip()
        if not re.fullmatch(r"\d+%?", text):
            raise ValueError("must be a count such as 25 or a percentage such as 10%")
        return text


class ScheduleConfig(_Section):
    interval: Duration | None = 600.0
    cron: list[str] = []
    jitter: Duration = 30.0

    _durations = field_validator("interval", "jitter", mode="before")(
        classmethod(lambda cls, v: None if v is None else parse_duration(v))
    )
    _crontab = field_validator("cron")(classmethod(lambda cls, v: _check_crontabs(v)))


class ReportEmailConfig(_Section):
    """Delivery of ``syncd report`` by email (SMTP, STARTTLS by default)."""

    smtp_host: str
    smtp_port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    """Upgrade the connection with STARTTLS before anything else (refused if the server cannot)."""
    tls_verify: bool = True
    """Check the server certificate and its host name; off only when set to false."""
    ca_file: ConfigPath | None = None
    """PEM bundle of the CAs to trust for the SMTP server (default: the system's)."""
    username: str | None = None
    password: str | None = None
    password_file: ConfigPath | None = None
    password_env: str | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    subject: str = "syncd report: {covered}% covered, {failures} failure(s), {expiring} expiring"
    """{covered}, {failures}, {expiring}, {pending} and {date} are filled in."""
    timeout: Duration = 30.0

    _one = model_validator(mode="before")(lambda v: _check_one_source(v, "password"))
    _durations = field_validator("timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("subject")
    @classmethod
    def _placeholders(cls, subject: str) -> str:
        try:
            subject.format(covered=0, failures=0, expiring=0, pending=0, date="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"unknown placeholder {exc}; use {{covered}}, {{failures}}, {{expiring}}, "
                "{pending} or {date}"
            ) from None
        return subject

    @model_validator(mode="after")
    def _no_password_in_clear(self) -> ReportEmailConfig:
        given = self.password or self.password_file or self.password_env
        if given and not self.username:
            raise ValueError("username is required with a password")
        if given and not self.starttls:
            raise ValueError("starttls: false would send the SMTP password in clear")
        return self


class ReportConfig(_Section):
    expiring_days: int = Field(default=30, ge=1)
    output: ConfigPath | None = None
    email: ReportEmailConfig | None = None
    """Send each report to ``recipients`` (off when unset)."""
    cron: list[str] = []
    """Refused when not empty: reports are scheduled by ``syncd-report.timer`` only."""

    @field_validator("cron")
    @classmethod
    def _scheduled_by_the_timer(cls, expressions: list[str]) -> list[str]:
        if expressions:
            raise ValueError(
                "syncd run no longer writes reports: remove report.cron and schedule "
                "`syncd report` with systemd/syncd-report.timer (OnCalendar=, e.g. "
                "`systemctl edit syncd-report.timer`) or cron"
            )
        return expressions


def _check_crontabs(expressions: list[str]) -> list[str]:
    from apscheduler.triggers.cron import CronTrigger

    for expression in expressions:
        try:
            CronTrigger.from_crontab(expression)
        except ValueError as exc:
            raise ValueError(f"{expression!r} is not a crontab expression: {exc}") from None
    return expressions


class MetricsConfig(_Section):
    listen: str | None = None
    """``HOST:PORT`` of the Prometheus endpoint of ``syncd run`` (off when unset)."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str | None) -> str | None:
        if listen is None:
            return None
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, for example 127.0.0.1:9464")
        return listen


class DaemonConfig(_Section):
    stop_timeout: Duration = 60.0
    """On SIGTERM, how long running steps get to reach their checkpoint."""
    health_max_age: Duration | None = None
    """``syncd health`` fails when the last pass finished longer ago (default: 3 intervals)."""
    stall_timeout: Duration = 900.0
    """A running pass that finishes no step for this long is stalled: the watchdog pings stop
    (systemd then restarts the service). Keep it above pipeline.step_time_limit plus
    google.timeout_seconds, and above the time a directory read takes."""

    _durations = field_validator("stop_timeout", "health_max_age", "stall_timeout", mode="before")(
        classmethod(lambda cls, v: None if v is None else parse_duration(v))
    )


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "text", "json", "journal"] = "auto"
    """auto: text on a terminal; JSON lines elsewhere, each with its syslog priority prefix
    (``<4>``) when stderr is the journal; journal: always those prefixes."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Config(_Section):
    state: StateConfig = StateConfig()
    directory: DirectoryConfig = DirectoryConfig()
    kms: KMSConfig = KMSConfig()
    kacls: KACLSConfig = KACLSConfig()
    ca: CAConfig = CAConfig()
    certificate: CertificateConfig = CertificateConfig()
    google: GoogleConfig = GoogleConfig()
    pipeline: PipelineConfig = PipelineConfig()
    policy: PolicyConfig = PolicyConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    report: ReportConfig = ReportConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    daemon: DaemonConfig = DaemonConfig()

    source_path: Path | None = Field(default=None, exclude=True)
    """The file this configuration was read from (not a key of the file)."""


# --- loading ------------------------------------------------------------------------------


def default_config_path() -> Path:
    """``$SYNCD_CONFIG`` if set, else ``/etc/syncd/syncd.yaml``."""
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def _describe(error: ErrorDetails) -> tuple[str, str]:
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return where, "unknown key"
    if error["type"] == "missing":
        return where, "required key is missing"
    message = error["msg"]
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    return where, message


def parse_config(data: Any, source: Path | None = None) -> Config:
    """Validate parsed YAML; raises ConfigError naming the first wrong key path."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(str(source or "config"), "the top level must be a mapping of sections")
    base_dir = source.parent if source else Path.cwd()
    # A section left empty in YAML (only comments under it) reads as null: take its defaults.
    sections = {key: value for key, value in data.items() if value is not None}
    try:
        config = Config.model_validate(sections, context={"base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors()
        where, problem = _describe(errors[0])
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(where, problem + more) from None
    missing = config.directory.missing_section()
    if missing is not None:
        raise missing
    return config.model_copy(update={"source_path": source})


def load_config(path: Path) -> Config:
    """Read and validate the YAML configuration file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "configuration file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read configuration file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(where, f"invalid YAML: {problem}") from None
    return parse_config(data, path.resolve())


# --- secrets and key files ----------------------------------------------------------------


def read_secret(section: BaseModel, name: str, where: str) -> bytes | None:
    """The secret ``name`` of ``section`` from whichever of X, X_file, X_env is set.

    ``where`` is the section's key path, used in error messages. None when none is set.
    """
    inline = getattr(section, name, None)
    file_path: Path | None = getattr(section, f"{name}_file", None)
    env_name: str | None = getattr(section, f"{name}_env", None)
    if inline:
        return str(inline).encode()
    if file_path is not None:
        return read_private_file(file_path, f"{where}.{name}_file", strict_mode=False)
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise ConfigError(f"{where}.{name}_env", f"environment variable {env_name} is not set")
        return value.encode()
    return None


def read_private_file(path: Path, where: str, *, strict_mode: bool) -> bytes:
    """Read a file holding key material.

    With ``strict_mode`` the file must not be readable by group or others (mode 0600 or
    stricter); syncd refuses a master key anyone else could read.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(where, f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(where, f"cannot read {path}: not a regular file")
    if strict_mode and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            where,
            f"{path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run chmod 600 {path}",
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path}: {exc.strerror}") from None


def write_new_key_file(path: Path, data: bytes, where: str) -> None:
    """Create ``path`` (mode 0600) holding ``data``; never overwrites, never leaves a part."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(where, f"{path} already exists; not overwritten") from None
    except OSError as error:
        raise ConfigError(where, f"cannot create {path}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        path.unlink(missing_ok=True)
        raise ConfigError(where, f"cannot write {path}: {error.strerror}") from None


_SECRET_KEYS = {"wrapping_key", "service_account_key", "password", "bind_password", "token"}


def redacted_summary(config: Config) -> dict[str, Any]:
    """The configuration as plain data with every inline secret and URL password hidden."""
    from sqlalchemy.engine import make_url

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: ("<redacted>" if key in _SECRET_KEYS and item else scrub(item))
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [scrub(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value

    data = scrub(config.model_dump(mode="python"))
    data["state"]["url"] = make_url(config.state.url).render_as_string(hide_password=True)
    return data  # type: ignore[no-any-return]
