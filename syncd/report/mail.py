"""Email delivery of a report (``report.email``): SMTP, STARTTLS with certificate checks.

The message has the plain-text report as its body and the HTML report attached. The SMTP
password comes from ``password``/``password_file``/``password_env``, is registered with the
log filter before use and never appears in a message or a log line.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from syncd.config import ReportEmailConfig, read_secret
from syncd.errors import SyncdError
from syncd.logs import register_secret
from syncd.report.model import Report
from syncd.report.render_html import render_html
from syncd.report.render_text import render_text

WHERE = "report.email"


class ReportMailError(SyncdError):
    """The report could not be sent by email (it is still written to its output)."""

    exit_code = 1


def subject_for(settings: ReportEmailConfig, report: Report) -> str:
    return settings.subject.format(
        covered=f"{report.coverage.percent_covered:g}",
        failures=len(report.failures),
        expiring=len(report.expiring),
        pending=report.coverage.pending,
        date=report.generated_at.strftime("%Y-%m-%d"),
    )


def build_message(settings: ReportEmailConfig, report: Report) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Subject"] = subject_for(settings, report)
    message["Date"] = formatdate(report.generated_at.timestamp(), usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(render_text(report))
    stamp = report.generated_at.strftime("%Y%m%d-%H%M")
    message.add_attachment(
        render_html(report).encode(),
        maintype="text",
        subtype="html",
        filename=f"syncd-report-{stamp}.html",
    )
    return message


def tls_context(settings: ReportEmailConfig) -> ssl.SSLContext:
    if not settings.tls_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    cafile = str(settings.ca_file) if settings.ca_file is not None else None
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ReportMailError(f"{WHERE}.ca_file: cannot load {cafile}: {reason}") from None


def _password(settings: ReportEmailConfig) -> str | None:
    secret = read_secret(settings, "password", WHERE)
    if secret is None:
        return None
    password = secret.decode().rstrip("\r\n")
    register_secret(password)
    return password


def send_report(settings: ReportEmailConfig, report: Report) -> None:
    """Send ``report`` to the recipients; ReportMailError (one line) when that fails."""
    message = build_message(settings, report)
    password = _password(settings)
    server = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout) as smtp:
            smtp.ehlo()
            if settings.starttls:
                smtp.starttls(context=tls_context(settings))
                smtp.ehlo()
            if settings.username and password is not None:
                smtp.login(settings.username, password)
            smtp.send_message(message)
    except smtplib.SMTPAuthenticationError as error:
        raise ReportMailError(
            f"{server} refused the login of {settings.username}: {_server_text(error)}"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise ReportMailError(
            f"{server} does not offer STARTTLS; the report was not sent in clear"
        ) from None
    except smtplib.SMTPRecipientsRefused as error:
        refused = ", ".join(sorted(error.recipients))
        raise ReportMailError(f"{server} refused the recipients {refused}") from None
    except smtplib.SMTPResponseException as error:
        raise ReportMailError(f"{server} answered {_server_text(error)}") from None
    except ssl.SSLCertVerificationError as error:
        raise ReportMailError(
            f"{server}: the server certificate was not accepted: {error.verify_message}"
        ) from None
    except (TimeoutError, smtplib.SMTPException, ssl.SSLError, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise ReportMailError(f"cannot send the report through {server}: {reason}") from None


def _server_text(error: smtplib.SMTPResponseException) -> str:
    text = error.smtp_error
    decoded = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    return f"{error.smtp_code} {' '.join(decoded.split())}"
