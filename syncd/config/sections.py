"""The sections of the configuration other than ``directory`` and ``kms``/``kacls``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from syncd.config.base import Section
from syncd.config.secrets import SecretRef
from syncd.config.types import ConfigPath, Duration, DurationOrZero, resolve_relative


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


class StateConfig(Section):
    """The state store: every user, key pair, certificate and task."""

    url: str = "sqlite:////var/lib/syncd/state.db"
    """SQLAlchemy URL: sqlite:///relative.db, sqlite:////absolute.db or postgresql+psycopg://..."""
    lock_file: ConfigPath | None = None
    """SQLite only: the run-lock file (default: the database file plus ``.lock``)."""
    shared: bool = False
    """PostgreSQL only: several syncd instances (hosts) with this configuration share the work.
    One plans a pass at a time; every instance claims tasks; a killed instance's tasks are
    taken over after pipeline.claim_timeout. A SQLite store serves one instance."""
    keep_finished_tasks: Duration | None = 90 * 86400.0
    """Finished (done or cancelled) tasks older than this are deleted by a pass, at most 20,000
    a pass; null keeps them all. The audit log keeps what every task did."""

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
            return f"sqlite:///{resolve_relative(Path(relative_file), info)}"
        return url

    @field_validator("shared")
    @classmethod
    def _shared_needs_postgresql(cls, shared: bool, info: ValidationInfo) -> bool:
        url = str(info.data.get("url", ""))
        if shared and not url.startswith("postgresql"):
            raise ValueError(
                "a SQLite state store serves one syncd instance: set state.url to a "
                "PostgreSQL database to run several instances"
            )
        return shared


class CAConfig(Section):
    """The issuing CA."""

    label: str = "default"
    """Which imported issuing CA signs user certificates."""


class CertificateConfig(Section):
    """The user certificates syncd issues."""

    key_bits: Literal[2048, 3072, 4096] = 3072
    """RSA key size of user key pairs."""
    hash: Literal["sha256", "sha384", "sha512"] = "sha256"
    """Signature hash of user certificates."""
    validity_days: int = Field(default=365, ge=1, le=3650)
    """How long a user certificate is valid."""
    renew_before_days: int = Field(default=30, ge=1)
    """Renew a certificate this many days before it expires; shorter than ``validity_days``."""
    subject_template: str = "CN={email}"
    """RFC 4514 distinguished name; {email}, {local_part} and {domain} are filled in."""
    crl_distribution_points: list[str] = []
    """CRL distribution point URLs put in user certificates."""
    aia_ca_issuers: list[str] = []
    """Authority information access: URLs of the issuing CA's certificate."""
    aia_ocsp: list[str] = []
    """Authority information access: OCSP responder URLs."""
    extensions_file: ConfigPath | None = None
    """OpenSSL-style extensions file whose [v3_ca] section replaces the default extensions."""
    include_aliases: bool = False
    """Put the user's aliases from the directory in the subjectAltName (and try an identity
    for each); an alias added or removed then re-issues the certificate."""

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

    @model_validator(mode="after")
    def _renewal_cannot_loop(self) -> CertificateConfig:
        if self.renew_before_days >= self.validity_days:
            raise ValueError(
                f"renew_before_days ({self.renew_before_days}) must be shorter than "
                f"validity_days ({self.validity_days}): every certificate would be due for "
                "renewal as soon as it is issued, and every pass would renew every user"
            )
        return self


class CRLConfig(Section):
    """The certificate revocation list syncd publishes for its issuing CA (``syncd crl``)."""

    output: ConfigPath | None = None
    """File each pass keeps fresh, for a web server to serve at the URL of
    ``certificate.crl_distribution_points``; ``{issuer}`` in it gives each issuing CA still
    valid a file of its own (for a CA rollover). None: only ``syncd crl`` writes a CRL."""
    validity: Duration = 7 * 86400.0
    """From thisUpdate to nextUpdate; a pass writes the CRL again when less than half is left."""
    format: Literal["der", "pem"] = "der"
    """der (what an HTTP CRL distribution point serves, RFC 5280) or pem."""


class GoogleConfig(Section):
    """The Google APIs: the service account and how syncd calls them."""

    service_account_key: SecretRef | None = None
    """The service account's JSON key (domain-wide delegation)."""
    endpoint: str | None = None
    """Overrides the API endpoint (the sandbox); the key file's token_uri overrides OAuth's."""
    admin_subject: str | None = None
    """The administrator the service account impersonates (directory reads)."""
    requests_per_second: float = Field(default=10.0, gt=0)
    """Most requests per second to Google, over all workers."""
    max_retries: int = Field(default=6, ge=0)
    """Retries of one request outside a pipeline step (commands, directory reads); inside a
    step, the step's budget (pipeline.step_retries, pipeline.step_time_limit) applies."""
    max_retry_after: Duration = 60.0
    """Longest ``Retry-After`` waited for; a longer one is a transient failure retried later."""
    timeout_seconds: Duration = 60.0
    """How long one request to Google may take."""


class PipelineConfig(Section):
    """How a pass runs its tasks."""

    workers: int = Field(default=4, ge=1, le=64)
    """Tasks run at once."""
    step_attempts: int = Field(default=5, ge=1)
    """Runs of one step within a pass (each run after the first is charged to the budget)."""
    step_retries: int = Field(default=4, ge=0)
    """A step's retry budget: requests re-sent by the Google client and runs of the step by
    the runner, together; a step sends at most the requests it needs plus this many."""
    step_time_limit: Duration = 120.0
    """No retry wait starts that would end later than this after the step began."""
    retry_initial: Duration = 60.0
    """First wait before a failed task is tried again by a later pass (then doubled)."""
    retry_max: Duration = 6 * 3600.0
    """Longest wait before a failed task is tried again."""
    claim_timeout: Duration = 600.0
    """How long a running task stays claimed by its pass after its last checkpoint: another
    process leaves it alone until then, and takes it over after (a killed instance's tasks).
    Longer than any one attempt of a step can take."""
    poll_interval: Duration = 10.0
    """Shared state store (``state.shared``): how often an instance looks for tasks to claim
    between the passes it plans itself (another instance's pass, a killed one's tasks)."""


class PolicyConfig(Section):
    """Safety limits on what a pass may do."""

    max_deprovision: str = "10%"
    """A count (``25``) or a percentage of active users (``10%``)."""
    obliterate_after_days: int | None = Field(default=None, ge=31)
    """Opt-in: obliterate key pairs disabled at least this many days ago (Gmail requires more
    than 30). Obliterating destroys the ability to read mail encrypted to the key pair."""
    verify_every: Duration = 7 * 86400.0
    """Every active credential is verified against Gmail and the KMS at least this often, a
    rotating slice of users each pass."""
    reissue_per_pass: str = "1%"
    """Most credentials one pass re-issues because the configuration changed (key size, hash,
    subject, CRL/AIA URLs, issuing CA, aliases): a count (``200``) or a percentage of managed
    users (``1%``); at least one a pass."""
    existing_credentials: Literal["hold", "adopt", "replace"] = "hold"
    """An identity syncd did not make: hold (reported, left alone), adopt (take over a valid
    key pair chaining to a configured issuer) or replace (point it at syncd's own)."""
    superseded_disable_after: Duration | None = None
    """Disable a renewed user's previous key pairs this long after they were superseded
    (default: never; a disabled key pair cannot decrypt the mail sent to it)."""
    deprovision_after: DurationOrZero = 3600.0
    """Grace period: a user missing from the directory is deprovisioned only once every read
    for this long has missed them (0: at the first read that misses them). A user disabled or
    suspended in the directory is deprovisioned at once."""

    max_new_per_pass: str | None = None
    """Rollout of a first deployment: most users given their first credential in one pass, a
    count (``500``) or a percentage (``1%``) of the users the directory lists in scope and
    enabled; at least one a pass. Unset: no limit. The others are deferred to later passes."""
    rollout_order: list[str] = []
    """Who gets a first credential first under ``max_new_per_pass``: org units (``/Pilot``,
    with the units under it), LDAP DNs (an OU and the entries under it) or groups the source
    reads for scope (an address or a DN); earlier entries first, then everyone else, by
    email within each."""

    @field_validator("max_deprovision", "reissue_per_pass", "max_new_per_pass", mode="before")
    @classmethod
    def _count_or_percent(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        if not re.fullmatch(r"\d+%?", text):
            raise ValueError("must be a count such as 25 or a percentage such as 10%")
        return text


def _check_crontabs(expressions: list[str]) -> list[str]:
    from apscheduler.triggers.cron import CronTrigger

    for expression in expressions:
        try:
            CronTrigger.from_crontab(expression)
        except ValueError as exc:
            raise ValueError(f"{expression!r} is not a crontab expression: {exc}") from None
    return expressions


class ScheduleConfig(Section):
    """When ``syncd run`` starts a pass."""

    interval: Duration | None = 600.0
    """Time between the end of a pass and the start of the next (none: cron only)."""
    cron: list[str] = []
    """Crontab expressions (``*/15 * * * *``) starting passes besides the interval."""
    jitter: Duration = 30.0
    """Up to this much random delay before each pass."""

    _crontab = field_validator("cron")(classmethod(lambda cls, v: _check_crontabs(v)))


class ReportEmailConfig(Section):
    """Delivery of ``syncd report`` by email (SMTP, STARTTLS by default)."""

    smtp_host: str
    """The SMTP server."""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    """The SMTP server's port (587: submission)."""
    starttls: bool = True
    """Upgrade the connection with STARTTLS before anything else (refused if the server cannot)."""
    tls_verify: bool = True
    """Check the server certificate and its host name; off only when set to false."""
    ca_file: ConfigPath | None = None
    """PEM bundle of the CAs to trust for the SMTP server (default: the system's)."""
    username: str | None = None
    """The SMTP login (none: no authentication)."""
    password: SecretRef | None = None
    """The SMTP password of username."""
    sender: str
    """The From address."""
    recipients: list[str] = Field(min_length=1)
    """Who gets the report."""
    subject: str = "syncd report: {covered}% covered, {failures} failure(s), {expiring} expiring"
    """{covered}, {failures}, {expiring}, {pending} and {date} are filled in."""
    timeout: Duration = 30.0
    """How long the SMTP conversation may take."""

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
        if self.password is not None and not self.username:
            raise ValueError("username is required with a password")
        if self.password is not None and not self.starttls:
            raise ValueError("starttls: false would send the SMTP password in clear")
        return self


class ReportConfig(Section):
    """``syncd report``: coverage, failures and expiring certificates."""

    expiring_days: int = Field(default=30, ge=1)
    """A certificate expiring within this many days is listed as expiring."""
    output: ConfigPath | None = None
    """Where ``syncd report`` writes the report (default: standard output)."""
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


class MetricsConfig(Section):
    """The Prometheus endpoint."""

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


class DaemonConfig(Section):
    """``syncd run`` under systemd."""

    stop_timeout: Duration = 60.0
    """On SIGTERM, how long running steps get to reach their checkpoint."""
    health_max_age: Duration | None = None
    """``syncd health`` fails when the last pass finished longer ago (default: 3 intervals)."""
    stall_timeout: Duration = 900.0
    """A running pass that finishes no step for this long is stalled: the watchdog pings stop
    (systemd then restarts the service). Keep it above pipeline.step_time_limit plus
    google.timeout_seconds, and above the time a directory read takes."""


class LoggingConfig(Section):
    """Log lines."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The least severe level logged (case-insensitive)."""
    format: Literal["auto", "text", "json", "journal"] = "auto"
    """auto: text on a terminal; JSON lines elsewhere, each with its syslog priority prefix
    (``<4>``) when stderr is the journal; journal: always those prefixes."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value
