"""First-time set-up (``syncd init``) and the deeper checks of ``syncd config check``.

``config check`` reads what the configuration points at, as the first pass would: the master
key (and that it is the one the state store's keys are sealed under), the KMIP server's
settings and certificate files (``kms.backend: kmip``), the KACLS wrapping key, the database
and its schema, the service account key, and the directory file.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from syncd.config import Config, write_new_key_file
from syncd.errors import EXIT_UNAVAILABLE, EXIT_USAGE, ConfigError, SyncdError, UnavailableError
from syncd.kms.kacls import KEY_BYTES, load_wrapping_key
from syncd.kms.local import create_master_key, load_master_key, verify_master_key
from syncd.kms.settings import kmip_problems
from syncd.state.db import Database


def _create_wrapping_key(config: Config) -> str:
    ref = config.kacls.wrapping_key
    path = ref.file if ref is not None else None
    if path is None:
        raise ConfigError(
            "kacls.wrapping_key_file", "set it to where the new key should be written"
        )
    if path.exists():
        return f"KACLS wrapping key {path} exists; kept"
    write_new_key_file(path, os.urandom(KEY_BYTES), "kacls.wrapping_key_file")
    return f"created KACLS wrapping key {path} (mode 0600)"


def initialise(config: Config, *, generate_kacls_key: bool) -> list[str]:
    """Create what a new installation needs; never overwrites an existing key.

    The state store records the master key's check value, so a later run with another master
    key is refused before it makes keys the right one could never open.
    """
    done = []
    master = config.kms.local.master_key_file
    if config.kms.backend == "local":
        if master.exists():
            load_master_key(master)
            done.append(f"master key {master} exists; kept")
        else:
            create_master_key(master)
            done.append(f"created master key {master} (mode 0600)")
    if generate_kacls_key:
        done.append(_create_wrapping_key(config))
    database = Database.open(config.state.url, require_current=False)
    try:
        applied = database.upgrade()
        done.append(
            f"state store {database.display_url}: "
            + (f"applied {', '.join(applied)}" if applied else "schema up to date")
        )
        if config.kms.backend == "local":
            how = verify_master_key(database.engine, load_master_key(master), master)
            done.append(f"master key check: {how}")
    finally:
        database.close()
    return done


def _check_database(config: Config, master_key: bytes | None) -> None:
    """The store is reachable and current, and (when it loaded) the master key is its own."""
    database = Database.open(config.state.url, require_current=True)
    try:
        if master_key is not None:
            path = config.kms.local.master_key_file
            verify_master_key(database.engine, master_key, path, record=False)
    finally:
        database.close()


def _check_service_account(config: Config) -> None:
    from syncd.google.credentials import DelegatedCredentials, key_source, load_key_info

    google = config.google
    configured = google.service_account_key is not None
    if not configured and config.directory.source != "google":
        return  # nothing reads it until the pipeline talks to Gmail
    DelegatedCredentials(load_key_info(google), [], where=key_source(google))


def _check_directory_file(config: Config) -> None:
    static = config.directory.static
    if config.directory.source != "static" or static is None:
        return
    where = "directory.static.path"
    try:
        with static.path.open("rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        raise ConfigError(where, f"file not found: {static.path}") from None
    except IsADirectoryError:
        raise ConfigError(where, f"{static.path} is a folder, not a file") from None
    except OSError as error:
        raise ConfigError(where, f"cannot read {static.path}: {error.strerror}") from None


def _check_kmip(config: Config, found: list[ConfigError]) -> None:
    """The KMIP transport's settings and files (no connection: ``syncd kms test`` does that):
    every missing key and unusable file is in ``found`` (kmip_problems); when there is none,
    the transport is opened as a pass would open it (its own checks of the TLS files)."""
    if found or config.kms.kmip.transport != "binary":
        return
    from syncd.kms.kmip.manager import open_transport

    open_transport(config.kms.kmip).close()


def _check_wrapping_key(config: Config) -> None:
    """The KACLS key, unless the KMS may wrap kaclsData itself and none is configured."""
    kacls = config.kacls
    configured = kacls.wrapping_key is not None
    server_may_wrap = config.kms.backend == "kmip" and config.kms.kmip.server_side_wrap != "never"
    if configured or not server_may_wrap:
        load_wrapping_key(kacls)


def check_configuration(config: Config) -> list[SyncdError]:
    """Problems found by reading what the configuration points at (keys, secrets, database,
    service account key, directory file)."""
    found = kmip_problems(config)
    problems: list[SyncdError] = list(found)
    master_key = None
    kmip = config.kms.backend == "kmip"
    master = config.kms.local.master_key_file
    try:
        # With kms.backend: kmip the embedded store matters only if it was used before the
        # switch (its keys serve their users until renewal): checked when the file exists.
        if not kmip or master.exists():
            master_key = load_master_key(master)
    except SyncdError as exc:
        problems.append(exc)
    checks: list[Callable[[], object]] = [
        lambda: _check_kmip(config, found) if kmip else None,
        lambda: _check_wrapping_key(config),
        lambda: _check_database(config, master_key),
        lambda: _check_service_account(config),
        lambda: _check_directory_file(config),
    ]
    for check in checks:
        try:
            check()
        except SyncdError as exc:
            problems.append(exc)
    if config.kacls.uri is None:
        problems.append(ConfigError("kacls.uri", "not set; Gmail needs it to reach the KACLS"))
    return problems


def problems_exit_code(problems: list[SyncdError]) -> int:
    """4 when every problem is an unavailable dependency (try again later), else 2."""
    if problems and all(isinstance(problem, UnavailableError) for problem in problems):
        return EXIT_UNAVAILABLE
    return EXIT_USAGE
