"""A full disk during a pass, and at the next pass's run-lock file: one line, exit 4, and the
pass after space is freed finishes the work exactly once (tmpfs file systems mounted as root)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ..pipeline.conftest import Deployment, deployment, gmail_state, pipeline_ca, sandbox_users
from .test_errors import _one_line_error

__all__ = ["deployment", "pipeline_ca"]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """Two small tmpfs mounts: ``state`` for the database, ``lock`` for the run-lock file."""
    mounted = []
    for name in ("state", "lock"):
        point = tmp_path / "mnt" / name
        point.mkdir(parents=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(point)], check=True
        )
        mounted.append(point)
    try:
        yield tmp_path / "mnt"
    finally:
        for point in mounted:
            subprocess.run(["umount", str(point)], check=False)


def _fill(folder: Path, leave: int = 0) -> Path:
    """Fill ``folder``'s file system, leaving ``leave`` bytes free."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    with filler.open("r+b") as handle:
        handle.truncate(max(0, filler.stat().st_size - leave))
    return filler


def _runs(state: Path) -> list[tuple[str | None, str | None]]:
    """Every run's outcome and finish time."""
    engine = create_engine(f"sqlite:///{state}")
    try:
        with engine.connect() as connection:
            query = text("SELECT outcome, finished_at FROM runs")
            return [(row[0], row[1]) for row in connection.execute(query)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_disk_full_during_a_pass_and_at_the_lock_file(
    deployment: Deployment, tmpfs: Path
) -> None:
    deploy = deployment
    state = tmpfs / "state" / "state.db"
    lock = tmpfs / "lock" / "syncd.lock"
    source = Path(deploy.config.state.url.removeprefix("sqlite:///"))
    shutil.copyfile(source, state)
    deploy.update_config(state={"url": f"sqlite:///{state}", "lock_file": str(lock)})
    users = sandbox_users(6)

    # Room for the pass to start (its run, the snapshot, the tasks) but not to finish.
    filler = _fill(state.parent, leave=128 * 1024)
    result = deploy.syncd("sync", "--once", process=True)  # its claims die with it
    assert result.returncode == 4, result.stderr
    line = _one_line_error(result.stderr)
    assert line.startswith(f"syncd: state.url: {state}: ") and "no space left" in line
    filler.unlink()
    # It failed during the pass, not before it: the pass's run is there, left unfinished, or
    # recorded as an error when the rolled-back transaction left room for that.
    [(outcome, finished_at)] = _runs(state)
    assert finished_at is None or outcome == "error"

    lock.touch()
    filler = _fill(lock.parent)
    result = deploy.syncd("sync", "--once")
    assert result.returncode == 4, result.stderr
    assert _one_line_error(result.stderr) == (
        f"syncd: state.lock_file: cannot write the run-lock file {lock}: No space left on "
        "device; free space on its file system"
    )
    filler.unlink()

    result = deploy.syncd("sync", "--once")
    assert result.returncode == 0, result.stderr
    for email in users:
        keypairs, identity = gmail_state(deploy, email)
        assert len(keypairs) == 1 and identity is not None, email

