"""Smoke test of ``bench/scale.py`` at 500 users: the benchmark runs end to end and its idle
pass is idle (nothing planned, no task, no Google request, no KMS write), with every stage
timed. Correctness only: no timing is asserted (the figures are the benchmark's to print)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_idle_pass_at_500_users_makes_no_writes() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scale.py"), "--users", "500", "--rounds", "1",
         "--json"],
        capture_output=True, text=True, timeout=110,
    )
    # The exit status says whether the targets were met: at 500 users start-up costs dominate,
    # so only the output is judged here.
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    results = json.loads(done.stdout[done.stdout.index("\n[\n") :])
    assert [r["source"] for r in results] == ["ldap", "static"]
    for result in results:
        assert result["entries"] == 500 and result["seeded_users"] == 500
        assert result["planned"] == {"actions": {}, "held": 0, "tasks": 0, "clean": True}
        assert result["all_rounds_idle"] is True
        assert result["google_requests"] == 0 and result["kms_writes"] == 0
        assert set(result["stages_seconds"]) == {"read", "load_state", "plan", "record", "other"}
        assert result["pass_seconds"] > 0 and result["baseline_seconds"] > 0
    assert "Google requests: 0 (writes 0); KMS writes: 0" in done.stdout
