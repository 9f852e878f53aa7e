"""``syncd health``: exit 0 only with a reachable database and a recent, sound last pass."""

from __future__ import annotations

import json
import time

from .conftest import Deployment


def test_health_follows_the_last_pass_and_the_database(deployment: Deployment) -> None:
    fresh = deployment.syncd("health")
    assert fresh.returncode == 1
    assert "no sync pass has finished yet" in fresh.stdout

    assert deployment.syncd("sync", "--once").returncode == 0
    healthy = deployment.syncd("health", "--format", "json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    document = json.loads(healthy.stdout)
    assert document["healthy"] is True
    assert [c["name"] for c in document["checks"]] == ["database", "last pass"]

    deployment.update_config(daemon={"health_max_age": "1s"})
    time.sleep(1.5)
    stale = deployment.syncd("health")
    assert stale.returncode == 1 and "older than 1s" in stale.stdout, stale.stdout
    deployment.update_config(daemon={"health_max_age": "1h"})

    deployment.users_file.write_text("users: [unclosed")
    assert deployment.syncd("sync", "--once").returncode != 0
    broken = deployment.syncd("health")
    assert broken.returncode == 1
    assert "the directory could not be read" in broken.stdout, broken.stdout


def test_health_fails_when_the_database_is_unreachable(deployment: Deployment) -> None:
    url = deployment.config.state.url
    if url.startswith("sqlite"):
        unreachable = "sqlite:////nonexistent-folder/state.db"
    else:
        unreachable = "postgresql+psycopg://syncd@127.0.0.1:1/syncd"
    deployment.update_config(state={"url": unreachable})
    result = deployment.syncd("health")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("FAIL database: ")
