"""Each format of ``syncd report`` against the known mix of tests/report/conftest.py."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

from syncd.state.queries import history

from .conftest import EXPIRES_IN_DAYS, Store, email

COVERAGE = {
    "users_in_scope": 11,
    "eligible": 10,
    "covered": 7,
    "pending": 1,
    "failed": 2,
    "not_covered": 3,
    "disabled_in_scope": 1,
    "deprovisioned": 2,
    "percent_covered": 70.0,
    "blocked": 0,
    "drift": 0,
}
TOP_KEYS = [
    "version",
    "generated_at",
    "expiring_days",
    "changes_since",
    "changes_since_source",
    "coverage",
    "failures",
    "expiring",
    "changes",
    "passes",
    "expiry_by_month",
    "coverage_history",
    "blocked_deprovisions",
    "key_format",
    "drift",
    "reasons",
]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json(store: Store, *args: str) -> dict[str, object]:
    done = store.syncd("report", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert list(document) == ["report"]
    report: dict[str, object] = document["report"]
    return report


def test_json_shape_and_values(store: Store) -> None:
    report = _json(store, "--no-record")
    assert list(report) == TOP_KEYS
    assert report["version"] == 1
    # The plan.* audit events of the fill, counted by kind and reason code, most frequent first.
    assert report["reasons"] == [
        {"action": "provision", "code": "new_in_scope", "count": 12},
        {"action": "deprovision", "code": "left_scope", "count": 2},
        {"action": "renew", "code": "expiring", "count": 1},
        {"action": "retry", "code": "backoff_elapsed", "count": 1},
    ]
    assert report["expiring_days"] == 30
    assert report["coverage"] == COVERAGE
    generated = _time(str(report["generated_at"]))
    assert report["changes_since_source"] == "default"
    assert generated - _time(str(report["changes_since"])) == timedelta(days=7)

    failures = report["failures"]
    assert isinstance(failures, list)
    assert [(f["email"], f["task"], f["step"], f["attempts"]) for f in failures] == [
        (email("f1"), "provision", "issue_certificate", 1),
        (email("f2"), "provision", "create_key", 2),
    ]
    assert failures[1]["error"] == "KMS unreachable again"
    # "since" is the task's first failure, from the audit log; f2 has failed twice.
    database = store.database()
    with database.sessions() as session:
        events = history(session, email("f2"))
    f2_failures = [e["at"] for e in events if e["action"] == "provision.failed"]
    database.close()
    assert len(f2_failures) == 2
    assert _time(failures[1]["since"]) == min(f2_failures)

    expiring = report["expiring"]
    assert isinstance(expiring, list)
    assert [(e["email"], e["days_left"]) for e in expiring] == [
        (email("a6"), -2),
        (email("a1"), 5),
        (email("a2"), 20),
    ]
    changes = report["changes"]
    assert isinstance(changes, dict)
    assert sorted(c["email"] for c in changes["provisioned"]) == sorted(
        email(n) for n in ["a1", "a2", "a3", "a4", "a5", "a6", "r1", "d1", "gone"]
    )
    assert [c["email"] for c in changes["renewed"]] == [email("r1")]
    assert sorted(c["email"] for c in changes["deprovisioned"]) == [email("d1"), email("gone")]

    passes = report["passes"]
    assert isinstance(passes, list) and len(passes) == 1
    assert passes[0]["kind"] == "sync"
    assert passes[0]["outcome"] == "failures"
    assert (passes[0]["done"], passes[0]["failed"]) == (12, 2)
    assert passes[0]["duration_seconds"] >= 0

    months = report["expiry_by_month"]
    assert isinstance(months, list) and len(months) == 12
    assert months[0]["month"] == f"{generated:%Y-%m}"
    # Every active certificate expiring within the coming 12 months (r1's at +300 days too).
    assert sum(m["count"] for m in months) == len(EXPIRES_IN_DAYS)
    history_points = report["coverage_history"]
    assert history_points == [{"at": report["generated_at"], "percent_covered": 70.0}]
    assert report["blocked_deprovisions"] == {
        "users": [],
        "reason": None,
        "run_id": None,
        "at": None,
    }


def test_expiring_days_option(store: Store) -> None:
    report = _json(store, "--no-record", "--expiring-days", "60")
    assert report["expiring_days"] == 60
    expiring = report["expiring"]
    assert isinstance(expiring, list)
    assert [e["email"] for e in expiring] == [email(n) for n in ("a6", "a1", "a2", "a3")]


def test_table(store: Store) -> None:
    done = store.syncd("report", "--no-record")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert re.search(r"^percent covered\s+70\.0$", text, re.M)
    assert re.search(r"^covered \(active identity\)\s+7$", text, re.M)
    assert "Failures (2)" in text and "Certificates expiring within 30 days (3)" in text
    assert re.search(r"^f1@example\.com\s+provision\s+issue_certificate\s+1\s", text, re.M)
    assert "provisioned: 9, renewed: 1, deprovisioned: 2" in text
    assert re.search(r"^1\s+sync\s+.*failures\s+12\s+2$", text, re.M)
    assert re.search(r"^provision\s+new_in_scope\s+12$", text, re.M)


def test_csv(store: Store) -> None:
    done = store.syncd("report", "--no-record", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert set(rows[0]) == {"section", "user", "item", "at", "value", "detail"}
    coverage = {r["item"]: r["value"] for r in rows if r["section"] == "coverage"}
    assert coverage == {key: str(value) for key, value in COVERAGE.items()}
    failures = [r for r in rows if r["section"] == "failure"]
    assert [(r["user"], r["item"], r["value"]) for r in failures] == [
        (email("f1"), "provision/issue_certificate", "1"),
        (email("f2"), "provision/create_key", "2"),
    ]
    assert failures[0]["detail"] == "CA refused: <script>x</script> & co"
    assert [r["user"] for r in rows if r["section"] == "expiring"] == [
        email("a6"),
        email("a1"),
        email("a2"),
    ]
    changes = [(r["item"], r["user"]) for r in rows if r["section"] == "change"]
    assert len(changes) == 12 and ("renewed", email("r1")) in changes
    reasons = {r["item"]: r["value"] for r in rows if r["section"] == "reason"}
    assert reasons == {"provision/new_in_scope": "12", "deprovision/left_scope": "2",
                       "renew/expiring": "1", "retry/backoff_elapsed": "1"}
    [run] = [r for r in rows if r["section"] == "pass"]
    assert run["item"].startswith("sync run ") and run["detail"] == "failures"


def test_html_is_self_contained(store: Store) -> None:
    output = store.root / "out" / "report.html"
    output.parent.mkdir()
    done = store.syncd("report", "--output", str(output))  # format from the suffix
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    page = output.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert oct(output.stat().st_mode & 0o777) == "0o640"
    # No script and nothing fetched: no src/href attributes, no CSS url(), no @import.
    for pattern in (r"<script", r"\ssrc\s*=", r"\shref\s*=", r"url\(", r"@import", r"<link"):
        assert not re.search(pattern, page, re.I), pattern
    # Values from the store are escaped.
    assert "CA refused: &lt;script&gt;x&lt;/script&gt; &amp; co" in page
    assert page.count("<svg") == 2
    assert "70%" in page
    for name in ("a6", "a1", "a2", "f1", "f2", "gone"):
        assert email(name) in page
    assert "@media print" in page
    assert re.search(r"<td>renew</td>\s*<td>expiring</td>\s*<td>1</td>", page)


def test_output_folder_missing_is_one_line_error(store: Store) -> None:
    missing = store.root / "nowhere" / "report.html"
    done = store.syncd("report", "--output", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"syncd: cannot write {missing}: No such file or directory"
    ]


def test_report_output_from_config(store: Store) -> None:
    target = store.root / "configured.json"
    done = store.syncd("report", "--no-record", config=store.config(output=str(target)))
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["report"]["coverage"] == COVERAGE
    to_stdout = store.syncd(
        "report", "--no-record", "--output", "-", config=store.config(output=str(target))
    )
    assert to_stdout.stdout.startswith("syncd report, ")


def test_generated_at_is_now(store: Store) -> None:
    before = datetime.now(UTC)
    report = _json(store, "--no-record")
    assert before <= _time(str(report["generated_at"])) <= datetime.now(UTC)
