"""An installation in a temporary folder, driven through the real ``syncd`` executable."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_syncd
from tests.support.testca import TestHierarchy, make_test_hierarchy, write_private_file

P12_PASSWORD = b"correct horse battery staple"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Installation:
    root: Path
    config_path: Path
    hierarchy: TestHierarchy
    outputs: list[str] = field(default_factory=list)

    @property
    def password_file(self) -> Path:
        return self.root / "ca" / "issuer.pass"

    def write_config(self, **sections: object) -> None:
        self.config_path.write_text(yaml.safe_dump(sections))

    def syncd(self, *args: str, env: dict[str, str] | None = None) -> Result:
        env = {**os.environ, **(env or {})}
        done = run_syncd(["--config", str(self.config_path), *args], env=env)
        self.outputs += [done.stdout, done.stderr]
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> str:
        result = self.syncd(*args)
        assert result.code == 0, f"syncd {' '.join(args)} exited {result.code}: {result.stderr}"
        return result.stdout

    def import_ca(self) -> str:
        assert self.hierarchy.issuer_p12 and self.hierarchy.root_pem
        return self.ok(
            "ca",
            "import",
            str(self.hierarchy.issuer_p12),
            "--password-file",
            str(self.password_file),
            "--chain",
            str(self.hierarchy.root_pem),
        )


@pytest.fixture(scope="session")
def hierarchy_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TestHierarchy]:
    folder = tmp_path_factory.mktemp("ca")
    hierarchy = make_test_hierarchy(folder, password=P12_PASSWORD, organization="syncd CLI Test")
    write_private_file(folder / "issuer.pass", P12_PASSWORD)
    return folder, hierarchy


def base_config(root: Path, db_url: str) -> dict[str, object]:
    return {
        "state": {"url": db_url},
        "kms": {"local": {"master_key_file": str(root / "master.key")}},
        "kacls": {
            "uri": "https://kacls.example.test/google_cse",
            "wrapping_key_file": str(root / "kacls.key"),
        },
        "ca": {"label": "test"},
        "certificate": {
            "key_bits": 2048,
            "crl_distribution_points": ["http://crl.example.test/issuing.crl"],
        },
        "logging": {"level": "DEBUG"},
    }


@pytest.fixture
def installation(
    tmp_path: Path, db_url: str, hierarchy_dir: tuple[Path, TestHierarchy]
) -> Installation:
    """A configured but not yet initialised installation, on SQLite and on PostgreSQL."""
    ca_source, hierarchy = hierarchy_dir
    (tmp_path / "ca").mkdir()
    for name in ("root.pem", "intermediate.pem", "issuer.p12", "issuer.pass"):
        (tmp_path / "ca" / name).write_bytes((ca_source / name).read_bytes())
        (tmp_path / "ca" / name).chmod(0o600)
    install = Installation(tmp_path, tmp_path / "syncd.yaml", hierarchy)
    install.write_config(**base_config(tmp_path, db_url))
    return install


@pytest.fixture
def sqlite_installation(
    tmp_path: Path, hierarchy_dir: tuple[Path, TestHierarchy]
) -> Installation:
    """An initialised installation on SQLite only, for checks that do not depend on the store."""
    installation = Installation(tmp_path, tmp_path / "syncd.yaml", hierarchy_dir[1])
    installation.write_config(**base_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}"))
    installation.ok("init", "--generate-kacls-key")
    return installation
