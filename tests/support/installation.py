"""A throwaway initialised installation for commands that read the state store: SQLite,
the embedded KMS, ``syncd init``, and one finished sync pass recorded so that ``syncd health``
reads it as a service's would (used by the start-up test and bench/startup.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def make_installation(root: Path) -> Path:
    """The configuration file of an initialised installation under ``root``."""
    config = root / "syncd.yaml"
    config.write_text(
        f"state: {{url: 'sqlite:///{root / 'state.db'}'}}\n"
        f"kms: {{local: {{master_key_file: '{root / 'master.key'}'}}}}\n"
        "kacls: {uri: 'https://kacls.example.test/google_cse', "
        f"wrapping_key_file: '{root / 'kacls.key'}'}}\n"
        "logging: {level: WARNING}\n"
    )
    init = [sys.executable, "-m", "syncd", "--config", str(config), "init"]
    done = subprocess.run([*init, "--generate-kacls-key"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"syncd init failed: {done.stderr[-2000:]}")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(root / "state.db") as db:
        db.execute(
            "INSERT INTO runs (kind, started_at, finished_at, outcome, summary, host, pid) "
            "VALUES ('sync', ?, ?, 'ok', '{\"done\": 1}', 'elsewhere', 1)",
            (now, now),
        )
    return config
