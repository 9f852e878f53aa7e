"""Reports are scheduled one way, by systemd/syncd-report.timer: ``report.cron`` is refused
with a line pointing at the timer, and the report unit waits for the network and times out."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import parse_config
from syncd.errors import ConfigError

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def test_report_cron_is_refused_in_favour_of_the_timer(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"report": {"cron": ["0 6 * * *"]}}, tmp_path / "syncd.yaml")
    message = str(caught.value)
    assert message.startswith("report.cron: syncd run no longer writes reports"), message
    assert "systemd/syncd-report.timer" in message
    assert parse_config({"report": {"cron": []}}).report.cron == []


def test_report_unit_waits_for_the_network_and_has_a_start_timeout() -> None:
    unit = (UNITS / "syncd-report.service").read_text().splitlines()
    assert "Wants=network-online.target" in unit
    assert any(line.startswith("After=network-online.target") for line in unit)
    assert any(line.startswith("TimeoutStartSec=") for line in unit)
    assert "OnCalendar=*-*-* 06:00:00" in (UNITS / "syncd-report.timer").read_text()
