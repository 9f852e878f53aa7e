"""Failures that must be loud: a wrong master key, an unavailable or broken state store, a
read-only folder, a bad port, and what `config check` must find before the first pass does.

Each runs the real CLI and expects one ``syncd: ...`` line (or ``problem: ...`` lines from
``config check``) naming the setting or file, the right exit code, and nothing changed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, func, select, text

from syncd.state.db import parse_url
from syncd.state.models import KmsKey, Run

from .conftest import Installation, base_config
from .test_errors import _one_line_error

WRONG_KEY = "is not the master key of this state store"
Cli = Callable[..., subprocess.CompletedProcess[str]]


def _count(url: str, model: type[KmsKey] | type[Run]) -> int:
    engine = create_engine(parse_url(url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(model)).scalar_one())
    finally:
        engine.dispose()


def _problems(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("problem: ")]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The real command line, run in this process (``syncd.cli.main``): output and exit code."""
    from syncd.cli import main

    def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(["--config", str(config), *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


# --- item 5: a master key other than the store's ------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the check is SQL-neutral
def test_wrong_master_key_is_refused_before_anything_is_touched(
    installation: Installation, db_url: str, cli: Cli
) -> None:
    inst = installation
    users = inst.root / "users.yaml"
    users.write_text(yaml.safe_dump({"users": [{"email": "b@example.com", "id": "b"}]}))
    config = yaml.safe_load(inst.config_path.read_text())
    config["directory"] = {"source": "static", "static": {"path": str(users)}}
    inst.write_config(**config)
    assert cli(inst.config_path, "init", "--generate-kacls-key").returncode == 0
    assert inst.hierarchy.root_pem is not None
    imported = cli(
        inst.config_path, "ca", "import", str(inst.hierarchy.issuer_p12),
        "--password-file", str(inst.password_file), "--chain", str(inst.hierarchy.root_pem),
    )
    assert imported.returncode == 0, imported.stderr
    keys_before = _count(db_url, KmsKey)

    master = inst.root / "master.key"
    master.unlink()
    master.write_bytes(os.urandom(32))  # well-formed, mode 0600, but not the store's key
    master.chmod(0o600)

    check = cli(inst.config_path, "config", "check")
    assert check.returncode == 2
    [problem] = _problems(check.stderr)
    assert problem.startswith("problem: kms.local.master_key_file: ") and WRONG_KEY in problem
    for command in (
        ("cert", "issue", "c@example.com", "--out", str(inst.root / "out")),
        ("sync", "--once"),
        ("ca", "import", str(inst.hierarchy.issuer_p12), "--password-file",
         str(inst.password_file), "--replace"),
    ):
        result = cli(inst.config_path, *command)
        assert result.returncode == 2, (command, result.stderr)
        line = _one_line_error(result.stderr)
        assert line.startswith("syncd: kms.local.master_key_file: ") and WRONG_KEY in line
        assert master.read_bytes().hex() not in result.stderr
    assert _count(db_url, KmsKey) == keys_before
    assert _count(db_url, Run) == 0  # no pass started


# --- items 9 and 10: the state store ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _minimal_config(root: Path, url: str) -> Path:
    path = root / "syncd.yaml"
    path.write_text(yaml.safe_dump(base_config(root, url)))
    return path


def test_unreachable_database_exits_4(tmp_path: Path, cli: Cli) -> None:
    url = f"postgresql://syncd:pw-not-shown@127.0.0.1:{_free_port()}/syncd"
    config = _minimal_config(tmp_path, url)
    for name in ("master.key", "kacls.key"):
        (tmp_path / name).write_bytes(os.urandom(32))
        (tmp_path / name).chmod(0o600)
    shown = cli(config, "ca", "show")
    assert shown.returncode == 4, shown.stderr
    line = _one_line_error(shown.stderr)
    assert line.startswith("syncd: state.url: the database ") and "unavailable" in line
    assert "Connection refused" in line and "pw-not-shown" not in line
    check = cli(config, "config", "check")
    assert check.returncode == 4, check.stderr
    assert any("state.url:" in problem for problem in _problems(check.stderr))


def test_state_file_that_is_not_a_database(tmp_path: Path, cli: Cli) -> None:
    state = tmp_path / "state.db"
    garbage = os.urandom(4096)
    state.write_bytes(garbage)
    config = _minimal_config(tmp_path, f"sqlite:///{state}")
    for command in (("ca", "show"), ("db", "upgrade"), ("init",)):
        result = cli(config, *command)
        assert result.returncode == 2, (command, result.stderr)
        assert _one_line_error(result.stderr) == (
            f"syncd: state.url: {state} is not a SQLite database (file is not a database)"
        )
    assert state.read_bytes() == garbage


def test_db_upgrade_on_a_revision_from_a_newer_syncd(tmp_path: Path, cli: Cli) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = _minimal_config(tmp_path, url)
    assert cli(config, "db", "upgrade").returncode == 0
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    result = cli(config, "db", "upgrade")
    assert result.returncode == 2, result.stderr
    line = _one_line_error(result.stderr)
    assert "revision 0099_future, which this syncd does not know" in line
    assert "nothing was changed" in line
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == (
            "0099_future"
        )
    engine.dispose()


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("99999", "state.url: port 99999 is not a TCP port (1-65535)"),
        ("fivefour", "state.url: cannot parse the database URL (is the port a number?)"),
    ],
)
def test_postgresql_url_with_a_bad_port(
    tmp_path: Path, port: str, problem: str, cli: Cli
) -> None:
    config = _minimal_config(tmp_path, f"postgresql://syncd:pw-not-shown@db.example:{port}/x")
    for command in (("config", "check"), ("ca", "show")):
        result = cli(config, *command)
        assert result.returncode == 2, result.stderr
        line = _one_line_error(result.stderr)
        assert line.startswith(f"syncd: {problem}") and "pw-not-shown" not in line


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders the test mounts small tmpfs file systems on (as root); unmounted afterwards."""
    mounted: list[Path] = []
    yield mounted
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=False)


def _mount(mounts: list[Path], point: Path, options: str) -> Path:
    point.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
    mounts.append(point)
    return point


def test_init_in_a_read_only_folder(
    tmp_path: Path, mounts: list[Path], cli: Cli
) -> None:
    read_only = _mount(mounts, tmp_path / "ro", "ro,size=64k")
    config = tmp_path / "syncd.yaml"
    settings = base_config(read_only, f"sqlite:///{read_only / 'state.db'}")
    config.write_text(yaml.safe_dump(settings))
    result = cli(config, "init")
    assert result.returncode == 2, result.stderr
    line = _one_line_error(result.stderr)
    assert line == (
        f"syncd: kms.local.master_key_file: cannot create {read_only / 'master.key'}: "
        "Read-only file system"
    )
    # The master key elsewhere, the database in the read-only folder.
    settings["kms"] = {"local": {"master_key_file": str(tmp_path / "master.key")}}
    config.write_text(yaml.safe_dump(settings))
    result = cli(config, "init")
    assert result.returncode == 2, result.stderr
    line = _one_line_error(result.stderr)
    assert line.startswith(f"syncd: state.url: cannot open or write {read_only / 'state.db'}")
    assert list(read_only.iterdir()) == []
    assert len((tmp_path / "master.key").read_bytes()) == 32  # whole, and kept by the next init


# --- item 11: what config check reads -------------------------------------------------------


def test_config_check_reads_the_service_account_key_and_the_directory(
    tmp_path: Path, cli: Cli
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = base_config(tmp_path, url)
    config = tmp_path / "syncd.yaml"
    config.write_text(yaml.safe_dump(settings))
    init = cli(config, "init", "--generate-kacls-key")
    assert init.returncode == 0, init.stderr
    key_file = tmp_path / "sa.json"
    secret = "SECRETMARKER-5f1c"
    not_a_key = {"type": "authorized_user", "refresh_token": secret}
    bad_private_key = {
        "type": "service_account",
        "client_email": "syncd@p.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n",
    }
    where = f"problem: google.service_account_key_file: {key_file}: "
    cases: list[tuple[str | None, str]] = [
        (None, f"problem: google.service_account_key_file: file not found: {key_file}"),
        (f"{secret} not json", where + "not JSON"),
        (json.dumps(not_a_key), where + 'not a service account key file'),
        (json.dumps(bad_private_key), where + "the key file's private_key cannot be read"),
    ]
    settings["google"] = {"service_account_key_file": str(key_file)}
    config.write_text(yaml.safe_dump(settings))
    for content, expected in cases:
        key_file.unlink(missing_ok=True)
        if content is not None:
            key_file.write_text(content)
            key_file.chmod(0o600)
        result = cli(config, "config", "check")
        assert result.returncode == 2, result.stderr
        assert [p for p in _problems(result.stderr) if p.startswith(expected)], result.stderr
        assert secret not in result.stderr + result.stdout

    del settings["google"]
    users = tmp_path / "missing-users.yaml"
    settings["directory"] = {"source": "static", "static": {"path": str(users)}}
    config.write_text(yaml.safe_dump(settings))
    result = cli(config, "config", "check")
    assert result.returncode == 2
    assert _problems(result.stderr) == [
        f"problem: directory.static.path: file not found: {users}"
    ]

    for source in ("ldap", "google", "static"):
        settings["directory"] = {"source": source}
        config.write_text(yaml.safe_dump(settings))
        result = cli(config, "config", "check")
        assert result.returncode == 2
        assert _one_line_error(result.stderr) == (
            f"syncd: directory.{source}: required when directory.source is {source}; "
            "the section is missing"
        )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_chain_errors_name_the_option_and_the_file(
    installation: Installation, cli: Cli
) -> None:
    inst = installation
    assert cli(inst.config_path, "init", "--generate-kacls-key").returncode == 0
    junk = inst.root / "junk.pem"
    junk.write_text("not a certificate\n")
    empty = inst.root / "empty.pem"
    empty.write_text("")
    for chain in (junk, empty):
        result = cli(
            inst.config_path, "ca", "import", str(inst.hierarchy.issuer_p12),
            "--password-file", str(inst.password_file), "--chain", str(chain),
        )
        assert result.returncode == 2
        assert _one_line_error(result.stderr).startswith(f"syncd: --chain {chain}: ")
    assert cli(inst.config_path, "ca", "show").stdout.startswith("no issuing CA imported")
