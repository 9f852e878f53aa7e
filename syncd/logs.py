"""Logging setup: JSON lines off a terminal (journald), human lines on one, never a secret.

When stderr is the journal (``$JOURNAL_STREAM`` names its device and inode, as systemd sets it
for ``StandardError=journal``), or with ``logging.format: journal``, each line starts with its
syslog priority, sd-daemon style (``<4>`` for a warning; journald's ``SyslogLevelPrefix=yes``,
the default, strips it), so ``journalctl -p warning`` shows warnings and errors.

Every record carries the pass id and the user it concerns when known: the pipeline binds them
with :func:`log_context` / :func:`bind` (a context variable, so each worker thread has its
own). A :class:`SecretFilter` on the handler renders each message and traceback and masks
anything that looks like key material, a password, a token or a URL password, plus the exact
secret values registered with :func:`register_secret`, before any formatter sees the record.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

REDACTED = "<redacted>"

_context: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "syncd_log_context", default=None
)


def _fields() -> Mapping[str, Any]:
    return _context.get() or {}


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (``pass_id``, ``user``) to every record logged inside the block."""
    token = _context.set({**_fields(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the current context until the enclosing log_context ends."""
    _context.set({**_fields(), **fields})


def unbind(*names: str) -> None:
    """Drop ``names`` from the current context."""
    _context.set({k: v for k, v in _fields().items() if k not in names})


# --- secrets --------------------------------------------------------------------------------

_PATTERNS = [
    # PEM private keys (any kind), possibly cut short.
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        re.S,
    ),
    # Bearer credentials.
    re.compile(r"(?P<key>\bBearer\s+)(?P<value>[A-Za-z0-9._~+/=-]+)", re.I),
    # key: value and key=value pairs whose key names a secret (JSON, YAML, query strings).
    re.compile(
        r"""(?P<key>["']?\b[\w-]*(?:private_key|password|passwd|secret|token|assertion|"""
        r"""wrapping_key|kacls_?data|wrapped_private_key|authorization)["']?\s*[:=]\s*)"""
        r"""(?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}\]]+)""",
        re.I,
    ),
    # user:password@ in URLs.
    re.compile(r"(?P<key>://[^:/@\s]+:)(?P<value>[^@\s]+)(?=@)"),
]

_known: set[str] = set()
_known_lock = threading.Lock()


def register_secret(value: str | bytes | None) -> None:
    """Mask this exact value (and its base64 and hex spellings, for bytes) wherever it appears."""
    if not value:
        return
    spellings: set[str] = set()
    if isinstance(value, bytes):
        spellings |= {base64.b64encode(value).decode(), value.hex(), repr(value)[2:-1]}
        with suppress(UnicodeDecodeError):
            spellings.add(value.decode().strip())
    else:
        spellings.add(value.strip())
    with _known_lock:
        _known.update(s for s in spellings if len(s) >= 8)


def redact(text: str) -> str:
    """``text`` with every secret it may hold replaced by ``<redacted>``."""
    with _known_lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        if "value" in pattern.groupindex:
            text = pattern.sub(lambda m: m.group("key") + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class SecretFilter(logging.Filter):
    """Renders each record's message and traceback once, masked, so nothing raw goes out."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception as error:  # a broken format string must not hide the record
            message = f"{record.msg!r} (unformattable arguments: {error!r})"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in _fields().items():
            setattr(record, name, value)
        return True


# --- formatters -----------------------------------------------------------------------------

_CONTEXT_FIELDS = ("pass_id", "user")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, pass_id and user when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO syncd.pipeline [pass 12 alice@example.com] message``."""

    def format(self, record: logging.LogRecord) -> str:
        where = []
        pass_id, user = getattr(record, "pass_id", None), getattr(record, "user", None)
        if pass_id is not None:
            where.append(f"pass {pass_id}")
        if user is not None:
            where.append(str(user))
        context = f" [{' '.join(where)}]" if where else ""
        line = (
            f"{_timestamp(record)} {record.levelname:<7} {record.name}{context}: "
            f"{record.getMessage()}"
        )
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


SYSLOG_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
"""syslog(3) priorities: debug, info, warning, err, crit."""


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (levels between two take the lower one's)."""
    below = [level for level in SYSLOG_PRIORITIES if level <= levelno]
    return SYSLOG_PRIORITIES[max(below)] if below else 7


class PriorityPrefixFormatter(logging.Formatter):
    """Another formatter's output with ``<N>`` before every line (journald reads one entry a
    line, and the priority of each from its prefix)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def is_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journal's stream socket (``$JOURNAL_STREAM`` = dev:inode)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # io.StringIO and closed streams
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


# --- setup ----------------------------------------------------------------------------------

LogFormat = Literal["auto", "text", "json", "journal"]


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LogOverrides:
    """The command line's say over logging (``-v``/``-q``/``--log-level``/``--log-format``).

    ``steps``: levels to move from the configured one, negative for more detail (``-v``) and
    positive for less (``-q``); an explicit ``level`` wins over both.
    """

    level: str | None = None
    fmt: LogFormat | None = None
    steps: int = 0


_overrides = LogOverrides()


def set_overrides(overrides: LogOverrides) -> None:
    """Apply ``overrides`` to every later :func:`setup_logging` (a reload keeps them)."""
    global _overrides
    _overrides = overrides


def effective_level(configured: str, overrides: LogOverrides) -> str:
    """The level to log at: ``--log-level``, else the configured one moved ``steps`` levels
    (clamped to DEBUG..CRITICAL)."""
    if overrides.level is not None:
        return overrides.level.upper()
    index = LEVELS.index(configured.upper()) if configured.upper() in LEVELS else 2
    return LEVELS[min(max(index + overrides.steps, 0), len(LEVELS) - 1)]


class _SyncdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`setup_logging` installs (found again and replaced on reload)."""


def setup_logging(
    level: str = "WARNING", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger through one masked handler; safe to call again (on reload).

    ``fmt``: ``text``, ``json``, ``journal`` (JSON lines with ``<N>`` priority prefixes), or
    ``auto``: text on a terminal, journal when the stream is the journal, else json.
    The command line's :class:`LogOverrides` (:func:`set_overrides`) apply on top.
    """
    stream = stream if stream is not None else sys.stderr
    level = effective_level(level, _overrides)
    fmt = _overrides.fmt or fmt
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "journal" if is_journal(stream) else "json"
    handler = _SyncdHandler(stream)
    handler.addFilter(SecretFilter())
    formatter: logging.Formatter = TextFormatter() if fmt == "text" else JSONFormatter()
    if fmt == "journal":
        formatter = PriorityPrefixFormatter(formatter)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SyncdHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("alembic", "apscheduler", "googleapiclient", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    return handler
