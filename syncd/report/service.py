"""Making a report: read the state store, build the model, write it out, record it, mail it.

Order matters: the report is written to its output before anything can fail on the way to
the mail server, so a report is never lost because mail failed. Every report made is recorded
as a run of kind ``report`` (unless ``record`` is off): the next report lists the changes since
then and charts coverage from the recorded summaries.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from syncd.config import Config
from syncd.errors import SyncdError
from syncd.report.mail import send_report
from syncd.report.model import Report, build_report, changes_window, run_summary
from syncd.report.queries import REPORT_RUN_KIND, previous_report_at, read_inputs
from syncd.report.render_csv import render_csv
from syncd.report.render_html import render_html
from syncd.report.render_json import render_json
from syncd.report.render_text import render_text
from syncd.report.thresholds import CheckResult, Condition, evaluate
from syncd.state.db import Database
from syncd.state.runs import finish_run, start_run

log = logging.getLogger("syncd.report")

ReportFormat = Literal["table", "csv", "json", "html"]
RENDERERS: dict[str, Callable[[Report], str]] = {
    "table": render_text,
    "csv": render_csv,
    "json": render_json,
    "html": render_html,
}
_SUFFIX_FORMATS: dict[str, ReportFormat] = {
    ".html": "html",
    ".htm": "html",
    ".json": "json",
    ".csv": "csv",
}


class ReportOutputError(SyncdError):
    """The report could not be written to its output file."""


@dataclass(frozen=True)
class ReportOptions:
    fmt: ReportFormat | None = None
    """None: from the output file's suffix (.html, .json, .csv), else table."""
    output: Path | None = None
    """None: standard output."""
    expiring_days: int | None = None
    since_days: int | None = None
    fail_on: Sequence[Condition] = ()
    record: bool = True
    email: bool = True


@dataclass
class ReportResult:
    report: Report
    fmt: ReportFormat
    checks: list[CheckResult] = field(default_factory=list)
    mail_error: str | None = None
    emailed: bool = False

    @property
    def alerts(self) -> list[CheckResult]:
        return [check for check in self.checks if check.holds]


def choose_format(fmt: ReportFormat | None, output: Path | None) -> ReportFormat:
    if fmt is not None:
        return fmt
    if output is not None:
        return _SUFFIX_FORMATS.get(output.suffix.lower(), "table")
    return "table"


def make_report(
    database: Database,
    now: datetime,
    expiring_days: int,
    since_days: int | None,
    key_format: str = "pkcs1",
) -> Report:
    with database.sessions() as session:
        since, source = changes_window(now, since_days, previous_report_at(session))
        inputs = read_inputs(session, since, key_format)
    return build_report(
        inputs,
        now=now,
        expiring_days=expiring_days,
        changes_since=since,
        changes_since_source=source,
    )


def record_report(database: Database, report: Report, now: datetime, outcome: str) -> int:
    with database.transaction() as session:
        run_id = start_run(session, REPORT_RUN_KIND, report.generated_at)
        finish_run(session, run_id, outcome, now, run_summary(report))
    return run_id


def write_output(text: str, path: Path) -> None:
    """Write ``text`` to ``path`` atomically (a reader never sees half a report), mode 0640."""
    folder = path.parent
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as error:
        raise ReportOutputError(f"cannot write {path}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ReportOutputError(f"cannot write {path}: {error.strerror}") from None


def produce_report(
    config: Config, database: Database, options: ReportOptions, now: datetime
) -> ReportResult:
    """Build, write (file or stdout), record and mail one report; test the --fail-on rules."""
    fmt = choose_format(options.fmt, options.output)
    days = options.expiring_days or config.report.expiring_days
    report = make_report(
        database, now, days, options.since_days, config.kacls.private_key_format
    )
    result = ReportResult(report, fmt, checks=evaluate(options.fail_on, report.metrics()))
    text = RENDERERS[fmt](report)
    if options.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_output(text, options.output)
        log.info("report written to %s", options.output)
    if options.record:
        record_report(database, report, now, "alerts" if result.alerts else "ok")
    settings = config.report.email
    if options.email and settings is not None:
        try:
            send_report(settings, report)
        except SyncdError as error:  # ReportMailError, or an unreadable password
            result.mail_error = str(error)
            log.error("report email not sent: %s", error)
        else:
            result.emailed = True
            log.info("report emailed to %d recipient(s)", len(settings.recipients))
    return result
