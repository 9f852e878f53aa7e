"""The logging setup: JSON lines off a terminal, human lines on one, never a secret."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from syncd.logs import log_context, register_secret, setup_logging

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_pass_and_user(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging("INFO", "auto", stream)
    log = logging.getLogger("syncd.test")
    with log_context(pass_id=12):
        log.info("planned %d actions", 3)
        with log_context(user="alice@example.com"):
            log.warning("provision failed")
    log.debug("not shown at INFO")
    first, second = _lines(stream)
    assert first["message"] == "planned 3 actions" and first["pass_id"] == 12
    assert "user" not in first
    assert second["user"] == "alice@example.com" and second["level"] == "WARNING"


def test_secrets_never_reach_the_output(restore_root_logger: None) -> None:
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    wrapping_key = os.urandom(32)
    register_secret(wrapping_key)
    log = logging.getLogger("syncd.test")
    log.info("key material: %s", PEM)
    log.info("token answer {'access_token': 'ya29.secret-token', 'expires_in': 3599}")
    log.info("connecting to postgresql+psycopg://syncd:hunter2-pass@db.example.com/syncd")
    log.info("headers: Authorization: Bearer abc.def.ghi")
    log.info("bind_password=correct-horse kaclsData=QUJDREVGR0g=")
    log.info("wrapping key %s / %s", wrapping_key.hex(), wrapping_key)
    try:
        raise ValueError(f"parse failed near {PEM}")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in (
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "ya29.secret-token",
        "hunter2-pass",
        "abc.def.ghi",
        "correct-horse",
        "QUJDREVGR0g=",
        wrapping_key.hex(),
    ):
        assert secret not in text, secret
    records = _lines(stream)
    assert "postgresql+psycopg://syncd:<redacted>@db.example.com/syncd" in str(records[2])
    assert "ValueError" in str(records[-1]["exception"])


def test_text_lines_on_a_terminal(restore_root_logger: None) -> None:
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "w", closefd=True) as stream:
        setup_logging("INFO", "auto", stream)
        with log_context(pass_id=7, user="bob@example.com"):
            logging.getLogger("syncd.pipeline").info("provision done")
        stream.flush()
        line = os.read(controller, 4096).decode()
    os.close(controller)
    assert "INFO" in line and "syncd.pipeline [pass 7 bob@example.com]: provision done" in line
    assert not line.lstrip().startswith("{")


def _journal_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> TextIO:
    """A file standing in for journald's stream socket: $JOURNAL_STREAM names it."""
    stream = path.open("w", encoding="utf-8")
    info = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    return stream


def test_each_line_to_the_journal_carries_its_priority(
    restore_root_logger: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _journal_file(tmp_path / "journal", monkeypatch) as stream:
        setup_logging("DEBUG", "auto", stream)
        log = logging.getLogger("syncd.test")
        log.debug("d")
        log.info("i")
        log.warning("w")
        log.error("e")
        log.critical("c")
        try:
            raise ValueError("multi\nline")
        except ValueError:
            log.exception("x")
    lines = (tmp_path / "journal").read_text().splitlines()
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>", "<3>"]
    records = [json.loads(line[3:]) for line in lines]
    assert [r["message"] for r in records] == ["d", "i", "w", "e", "c", "x"]
    assert "multi\nline" in str(records[-1]["exception"])


def test_journal_format_prefixes_every_line_of_text(
    restore_root_logger: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    setup_logging("INFO", "journal", stream)
    logging.getLogger("syncd.test").warning("careful")
    [line] = stream.getvalue().splitlines()
    assert line.startswith("<4>{") and json.loads(line[3:])["level"] == "WARNING"


def test_no_prefix_off_the_journal_nor_on_a_terminal(
    restore_root_logger: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A JOURNAL_STREAM inherited from elsewhere names another file: plain JSON lines.
    with _journal_file(tmp_path / "journal", monkeypatch), (tmp_path / "other").open("w") as other:
        setup_logging("INFO", "auto", other)
        logging.getLogger("syncd.test").warning("plain")
    assert json.loads((tmp_path / "other").read_text())["message"] == "plain"

    controller, terminal = pty.openpty()
    info = os.fstat(terminal)
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    with os.fdopen(terminal, "w", closefd=True) as stream:
        setup_logging("INFO", "auto", stream)
        logging.getLogger("syncd.test").warning("on a terminal")
        stream.flush()
        line = os.read(controller, 4096).decode()
    os.close(controller)
    assert "on a terminal" in line and "<4>" not in line and not line.startswith("<")
