"""The whole configuration file: the :class:`Config` model, loading, errors and redaction.

Every section has defaults, so a missing section means "the defaults"; an unknown key, a wrong
type or a missing referenced file is an error that names the dotted key path
(``kms.local.master_key_file: file not found: ...``). Relative paths in the file are taken
relative to the file's own folder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import ErrorDetails

from syncd.config.base import SECRET_FORMS, Section, flat_key
from syncd.config.directory import DirectoryConfig, NoDirectory
from syncd.config.kms import KACLSConfig, KMSConfig, LocalBackendKMS
from syncd.config.sections import (
    CAConfig,
    CertificateConfig,
    CRLConfig,
    DaemonConfig,
    GoogleConfig,
    LoggingConfig,
    MetricsConfig,
    PipelineConfig,
    PolicyConfig,
    ReportConfig,
    ScheduleConfig,
    StateConfig,
)
from syncd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/syncd/syncd.yaml")
CONFIG_ENV_VAR = "SYNCD_CONFIG"


class Config(Section):
    """One syncd installation (``/etc/syncd/syncd.yaml``)."""

    state: StateConfig = StateConfig()
    """The state store (SQLite or PostgreSQL)."""
    directory: DirectoryConfig = NoDirectory()
    """Where the users who must have CSE come from."""
    kms: KMSConfig = LocalBackendKMS()
    """Where key pairs are made and kept."""
    kacls: KACLSConfig = KACLSConfig()
    """The KACLS that unwraps private keys for Gmail."""
    ca: CAConfig = CAConfig()
    """The issuing CA."""
    certificate: CertificateConfig = CertificateConfig()
    """The user certificates."""
    crl: CRLConfig = CRLConfig()
    """The certificate revocation list of the issuing CA."""
    google: GoogleConfig = GoogleConfig()
    """The Google APIs: service account and limits."""
    pipeline: PipelineConfig = PipelineConfig()
    """How a pass runs its tasks."""
    policy: PolicyConfig = PolicyConfig()
    """Safety limits on deprovisioning."""
    schedule: ScheduleConfig = ScheduleConfig()
    """When ``syncd run`` starts a pass."""
    report: ReportConfig = ReportConfig()
    """``syncd report``."""
    logging: LoggingConfig = LoggingConfig()
    """Log lines."""
    metrics: MetricsConfig = MetricsConfig()
    """The Prometheus endpoint."""
    daemon: DaemonConfig = DaemonConfig()
    """``syncd run`` under systemd."""

    source_path: SkipJsonSchema[Path | None] = Field(default=None, exclude=True)
    """The file this configuration was read from (not a key of the file)."""


# --- loading ------------------------------------------------------------------------------


def default_config_path() -> Path:
    """``$SYNCD_CONFIG`` if set, else ``/etc/syncd/syncd.yaml``."""
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


UNIONS = {
    "directory": ("source", "'static', 'google' or 'ldap'"),
    "kms": ("backend", "'local' or 'kmip'"),
}
"""The tagged unions: section -> (discriminating key, the values it takes)."""



def secret_names() -> set[str]:
    """The keys of every secret of the file (``token``, ``bind_password``, ...)."""
    names: set[str] = set()
    pending: list[type[Section]] = [Section]
    while pending:
        section = pending.pop()
        names.update(section.secret_names)
        pending.extend(section.__subclasses__())
    return names


_SECRET_NAMES = secret_names()


def _key_path(loc: tuple[int | str, ...]) -> list[int | str]:
    """The YAML key path of a pydantic error location: union tags dropped, secret forms
    flattened (``token``, ``file`` -> ``token_file``)."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] in UNIONS:
        del parts[1]
    flat: list[int | str] = []
    for part in parts:
        if flat and part in SECRET_FORMS and flat[-1] in _SECRET_NAMES:
            flat[-1] = flat_key(str(flat[-1]), str(part))
        else:
            flat.append(part)
    return flat


def _describe(error: ErrorDetails) -> tuple[str, str]:
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid" and len(loc) == 1 and loc[0] in UNIONS:
        key, values = UNIONS[str(loc[0])]
        return f"{loc[0]}.{key}", f"Input should be {values}"
    where = ".".join(str(part) for part in _key_path(loc))
    if error["type"] == "extra_forbidden":
        return where, "unknown key"
    if error["type"] == "missing":
        if len(loc) == 3 and loc[0] in UNIONS and loc[1] == loc[2]:
            key = UNIONS[str(loc[0])][0]
            return where, f"required when {loc[0]}.{key} is {loc[1]}; the section is missing"
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


# --- redaction ------------------------------------------------------------------------------


def redacted_summary(config: Config) -> dict[str, Any]:
    """The configuration as plain data with every inline secret and URL password hidden."""
    from sqlalchemy.engine import make_url

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: ("<redacted>" if key in _SECRET_NAMES and item else scrub(item))
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
