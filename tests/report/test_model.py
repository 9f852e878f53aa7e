"""The pure parts: definitions of the model, the changes window, --fail-on parsing, charts,
and the report.email configuration rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.config import parse_config
from syncd.errors import ConfigError
from syncd.report.charts import bar_chart, line_chart
from syncd.report.model import (
    BlockedRow,
    UserRow,
    blocked,
    changes_window,
    coverage,
    expiry_by_month,
)
from syncd.report.thresholds import evaluate, parse_condition

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)


def _user(name: str, **fields: object) -> UserRow:
    values: dict[str, object] = {
        "email": f"{name}@example.com",
        "state": "active",
        "in_scope": True,
        "enabled": True,
        "generation": 1,
        "certificate_expires": NOW + timedelta(days=100),
        "task": None,
        "step": None,
        "attempts": 0,
        "last_error": None,
        "next_attempt": None,
    }
    values.update(fields)
    return UserRow(**values)  # type: ignore[arg-type]


def test_nobody_eligible_is_fully_covered() -> None:
    assert coverage([]).percent_covered == 100.0
    out = _user("x", in_scope=False, state="out of scope", generation=None)
    assert coverage([out]).eligible == 0


def test_renewing_user_is_covered_and_pending() -> None:
    result = coverage(
        [
            _user("r", state="renew pending", task="renew"),
            _user("n", generation=None, state="not provisioned"),
        ]
    )
    assert (result.covered, result.pending, result.eligible, result.percent_covered) == (
        1,
        1,
        2,
        50.0,
    )


def test_blocked_deprovisions_are_never_covered() -> None:
    users = [
        _user("stays"),
        _user("left"),  # missing from the directory, kept in scope: its deprovision was blocked
        _user("off", enabled=False),  # disabled in the directory, deprovision blocked too
        _user("gone", in_scope=False, generation=None, deprovisioned=True),
    ]
    row = BlockedRow(7, NOW, "3 of 3 managed users would be deprovisioned", (
        "left@example.com", "off@example.com", "gone@example.com"
    ))
    refused = blocked(users, row)
    assert refused.users == ["left@example.com", "off@example.com"]  # gone is out of scope
    result = coverage(users, refused.users)
    assert (result.eligible, result.covered, result.blocked) == (2, 1, 2)
    assert result.percent_covered == pytest.approx(33.33)
    assert blocked(users, None).users == []


def test_changes_window() -> None:
    previous = NOW - timedelta(hours=20)
    assert changes_window(NOW, None, previous) == (previous, "previous_report")
    assert changes_window(NOW, 2, previous) == (NOW - timedelta(days=2), "since_days")
    assert changes_window(NOW, None, None) == (NOW - timedelta(days=7), "default")


def test_expiry_by_month_wraps_the_year() -> None:
    users = [
        _user("old", certificate_expires=NOW - timedelta(days=40)),  # expired: this month
        _user("dec", certificate_expires=datetime(2025, 12, 31, tzinfo=UTC)),
        _user("oct", certificate_expires=datetime(2026, 10, 1, tzinfo=UTC)),
        _user("nov", certificate_expires=datetime(2026, 11, 1, tzinfo=UTC)),  # 13th month
        _user("none", generation=None, certificate_expires=NOW),
    ]
    months = expiry_by_month(users, NOW)
    assert [m.month for m in months][:3] == ["2025-11", "2025-12", "2026-01"]
    assert months[-1].month == "2026-10"
    assert {m.month: m.count for m in months if m.count} == {
        "2025-11": 1,
        "2025-12": 1,
        "2026-10": 1,
    }


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        ("failures>0", 1, True),
        ("failures > 0", 0, False),
        ("coverage<99", 98.5, True),
        ("coverage<99.5", 99.5, False),
        ("expiring>=3", 3, True),
        ("pending<=0", 1, False),
        ("pending==2", 2, True),
    ],
)
def test_conditions(text: str, value: float, holds: bool) -> None:
    condition = parse_condition(text)
    [result] = evaluate([condition], {condition.metric: value})
    assert result.holds is holds


@pytest.mark.parametrize("text", ["failures=>1", "coverage", ">3", "pending!=1", "failures>1e3"])
def test_malformed_conditions(text: str) -> None:
    with pytest.raises(ConfigError, match="--fail-on"):
        parse_condition(text)


def test_charts_escape_and_scale() -> None:
    svg = bar_chart(["<a>", "b"], [0, 7], "x & y")
    assert "&lt;a&gt;" in svg and "<a>" not in svg and "x &amp; y" in svg
    assert ">10<" in svg  # a round axis maximum above 7
    empty = line_chart([], "nothing")
    assert empty.startswith("<svg") and "<circle" not in empty
    two = line_chart([(NOW, 50.0), (NOW + timedelta(days=1), 75.0)], "two")
    assert "<polyline" in two and two.count("<circle") == 2


_EMAIL = {
    "smtp_host": "smtp.example.com",
    "sender": "s@example.com",
    "recipients": ["r@example.com"],
}


def test_email_defaults_are_safe() -> None:
    settings = parse_config({"report": {"email": _EMAIL}}).report.email
    assert settings is not None
    assert (settings.smtp_port, settings.starttls, settings.tls_verify) == (587, True, True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"username": "u", "password": "p", "password_env": "E"},
            "give only one of password, password_env",
        ),
        (
            {"username": "u", "password_env": "E", "starttls": False},
            "would send the SMTP password in clear",
        ),
        ({"password_env": "E"}, "username is required with a password"),
        ({"subject": "{oops}"}, "unknown placeholder 'oops'"),
        ({"recipients": []}, "report.email.recipients"),
    ],
)
def test_email_config_rules(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"report": {"email": {**_EMAIL, **extra}}})


def test_email_password_is_redacted() -> None:
    from syncd.config import redacted_summary

    config = parse_config({"report": {"email": {**_EMAIL, "username": "u", "password": "hunter2"}}})
    assert "hunter2" not in repr(redacted_summary(config))


def test_example_configuration_email_block_is_valid() -> None:
    """The commented report.email block of config/example.yaml, uncommented, is accepted."""
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).parents[2] / "config" / "example.yaml").read_text()
    block = text.split("  # email:\n", 1)[1].split("\nlogging:", 1)[0]
    lines = ["  email:"] + [
        re.sub(r"^  #   ", "    ", line)
        for line in block.splitlines()
        if line.startswith("  #   ") and not line.startswith("  #   #")
    ]
    data = yaml.safe_load("report:\n" + "\n".join(lines))
    settings = parse_config(data).report.email
    assert settings is not None
    assert settings.recipients == ["security-team@example.com"]
    assert (settings.starttls, settings.tls_verify, settings.username) == (
        True,
        True,
        "syncd-reports",
    )
    assert settings.password.file == Path("/etc/syncd/smtp.pass")
