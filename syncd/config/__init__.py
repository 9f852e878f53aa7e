"""The configuration file: its typed schema, validation, and secret references.

One YAML file describes a syncd installation (:mod:`syncd.config.model`). Sections:
:mod:`~syncd.config.directory` (a tagged union on ``source``), :mod:`~syncd.config.kms`
(``kms``, a tagged union on ``backend``, and ``kacls``), :mod:`~syncd.config.sections` (the
rest). Secrets (``X`` / ``X_file`` / ``X_env``) are :class:`SecretRef` values read only when
used (:mod:`~syncd.config.secrets`); durations are one type (:mod:`~syncd.config.types`).
:func:`json_schema` is the file's JSON Schema, descriptions taken from the field docstrings.
"""

from __future__ import annotations

from syncd.config.directory import (
    LDAP_USER_FILTERS,
    DirectoryConfig,
    GoogleDirectory,
    GoogleSourceConfig,
    LdapDirectory,
    LdapGroupRule,
    LdapSearchRule,
    LdapSourceConfig,
    NoDirectory,
    OrgUnitScope,
    StaticDirectory,
    StaticSourceConfig,
)
from syncd.config.kms import (
    KACLSConfig,
    KmipBackendKMS,
    KmipConfig,
    KMSConfig,
    LocalBackendKMS,
    LocalKMSConfig,
    with_backend,
)
from syncd.config.model import (
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_PATH,
    Config,
    default_config_path,
    load_config,
    parse_config,
    redacted_summary,
)
from syncd.config.schema import json_schema
from syncd.config.secrets import SecretRef, read_private_file, read_secret, write_new_key_file
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
    ReportEmailConfig,
    ScheduleConfig,
    StateConfig,
)
from syncd.config.types import ConfigPath, Duration, DurationOrZero, parse_duration

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_PATH",
    "LDAP_USER_FILTERS",
    "CAConfig",
    "CRLConfig",
    "CertificateConfig",
    "Config",
    "ConfigPath",
    "DaemonConfig",
    "DirectoryConfig",
    "Duration",
    "DurationOrZero",
    "GoogleConfig",
    "GoogleDirectory",
    "GoogleSourceConfig",
    "KACLSConfig",
    "KMSConfig",
    "KmipBackendKMS",
    "KmipConfig",
    "LdapDirectory",
    "LdapGroupRule",
    "LdapSearchRule",
    "LdapSourceConfig",
    "LocalBackendKMS",
    "LocalKMSConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NoDirectory",
    "OrgUnitScope",
    "PipelineConfig",
    "PolicyConfig",
    "ReportConfig",
    "ReportEmailConfig",
    "ScheduleConfig",
    "SecretRef",
    "StateConfig",
    "StaticDirectory",
    "StaticSourceConfig",
    "default_config_path",
    "json_schema",
    "load_config",
    "parse_config",
    "parse_duration",
    "read_private_file",
    "read_secret",
    "redacted_summary",
    "with_backend",
    "write_new_key_file",
]
