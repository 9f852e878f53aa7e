"""PostgreSQL is the ``syncd[postgres]`` extra: without psycopg, a postgresql:// state.url is
one line naming the extra (exit 2), not an ImportError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from syncd.errors import ConfigError
from syncd.state.db import create_engine_for

URL = "postgresql://syncd:pw-not-shown@db.example.test/syncd"
MESSAGE = (
    "state.url: a PostgreSQL database needs the psycopg driver, which is not installed: "
    "pip install 'syncd[postgres]'"
)


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(ConfigError) as caught:
        create_engine_for(URL)
    assert str(caught.value) == MESSAGE


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    # A psycopg that cannot be imported, ahead of the installed one on the path.
    (tmp_path / "hide" / "psycopg").mkdir(parents=True)
    (tmp_path / "hide" / "psycopg" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'psycopg'\")\n"
    )
    for name in ("master.key", "kacls.key"):
        (tmp_path / name).write_bytes(os.urandom(32))
        (tmp_path / name).chmod(0o600)
    config = tmp_path / "syncd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state": {"url": URL},
                "kms": {"local": {"master_key_file": str(tmp_path / "master.key")}},
                "kacls": {
                    "uri": "https://kacls.example.test/google_cse",
                    "wrapping_key_file": str(tmp_path / "kacls.key"),
                },
            }
        )
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hide")}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("syncd")), "--config", str(config), "db", "status"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [f"syncd: {MESSAGE}"], result.stderr
    assert "pw-not-shown" not in result.stderr + result.stdout
