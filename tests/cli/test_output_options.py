"""Operator options on every command: logging (-v/-q/--log-level/--log-format, before or after
the sub-command), --format json, and tables measured in terminal cells (CJK, emoji)."""

from __future__ import annotations

import argparse
import json
import logging
import unicodedata
from pathlib import Path

import pytest
import yaml

from syncd.cli import build_parser, main
from syncd.cli.common import log_overrides
from syncd.logs import JSONFormatter, TextFormatter
from syncd.output import render_table

from .conftest import base_config


def _leaf_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _leaf_commands(sub, (*prefix, name))
    return found or [(prefix, parser)]


def _required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Values that make a bare command parse (positionals and required options)."""
    values: list[str] = []
    for action in parser._actions:
        if action.option_strings and action.required:
            values += [action.option_strings[0]] + ([] if action.nargs == 0 else ["x"])
        elif not action.option_strings and action.nargs != "?" and action.dest != "help":
            values.append("x")
    return values


LEAVES = _leaf_commands(build_parser())

# Commands without --format, each for a reason: a service logs and prints nothing; the schema
# is a JSON document already; the demo prints the transcript of the commands it runs; the
# CRL's --format is its encoding (der or pem).
WITHOUT_FORMAT = {("run",), ("sandbox", "serve"), ("config", "schema"), ("demo",), ("crl",)}


def test_every_command_is_listed() -> None:
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"sync", "resync", "status", "health", "run", "google key-pairs create"} <= names
    assert len(names) == 33


@pytest.mark.parametrize("path,leaf", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_logging_options_are_taken_before_and_after_every_command(
    path: tuple[str, ...], leaf: argparse.ArgumentParser
) -> None:
    rest = _required_arguments(leaf)
    parser = build_parser()
    before = parser.parse_args(["-v", "--log-format", "json", *path, *rest])
    after = parser.parse_args([*path, *rest, "-vv", "--log-level", "error", "-q"])
    both = parser.parse_args(["-q", *path, *rest, "-q", "--log-format", "text"])
    assert (log_overrides(before).steps, log_overrides(before).fmt) == (-1, "json")
    assert (log_overrides(after).steps, log_overrides(after).level) == (-1, "ERROR")
    assert (log_overrides(both).steps, log_overrides(both).fmt) == (2, "text")


PRINTING = [(path, leaf) for path, leaf in LEAVES if path not in WITHOUT_FORMAT]


@pytest.mark.parametrize("path,leaf", PRINTING, ids=[" ".join(p) for p, _ in PRINTING])
def test_every_command_that_prints_takes_format_json(
    path: tuple[str, ...], leaf: argparse.ArgumentParser
) -> None:
    args = build_parser().parse_args([*path, *_required_arguments(leaf), "--format", "json"])
    assert args.format == "json"


def _static_install(tmp_path: Path, users: list[dict[str, object]]) -> Path:
    config = base_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")
    config["logging"] = {"level": "INFO", "format": "text"}
    config["directory"] = {"source": "static", "static": {"path": str(tmp_path / "users.yaml")}}
    (tmp_path / "users.yaml").write_text(yaml.safe_dump({"users": users}, allow_unicode=True))
    path = tmp_path / "syncd.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "options,level,formatter",
    [
        ([], "INFO", TextFormatter),
        (["-v"], "DEBUG", TextFormatter),
        (["-q"], "WARNING", TextFormatter),
        (["-qqq", "--log-format", "json"], "CRITICAL", JSONFormatter),
        (["-v", "--log-level", "error"], "ERROR", TextFormatter),
    ],
)
def test_the_options_change_the_level_and_format_of_the_configured_logging(
    tmp_path: Path, options: list[str], level: str, formatter: type[logging.Formatter]
) -> None:
    config = _static_install(tmp_path, [{"email": "a@example.com", "id": "1"}])
    assert main(["--config", str(config), "directory", "test", *options]) == 0
    root = logging.getLogger()
    assert logging.getLevelName(root.level) == level
    handler = root.handlers[-1]
    assert isinstance(handler.formatter, formatter)


def _cells(text: str) -> int:
    """Terminal cells by the Unicode East Asian Width property (not syncd's wcwidth)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


WIDE_USERS = [
    {"email": "yamada@example.com", "id": "社員-山田太郎"},
    {"email": "party@example.com", "id": "🎉🎉 team"},
    {"email": "li@example.com", "id": "李"},
    {"email": "plain@example.com", "id": "ascii-only"},
]


def test_wide_characters_keep_the_columns_of_a_table_aligned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _static_install(tmp_path, WIDE_USERS)
    assert main(["--config", str(config), "directory", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    header, rule, *rows = lines
    assert header.split() == ["user", "directory", "id", "enabled"]
    assert len(rows) == 4
    # The third column ("enabled") starts at the same terminal cell on every line.
    starts = {_cells(row[: row.rindex("  ") + 2]) for row in rows}
    assert starts == {_cells(header[: header.index("enabled")])}
    assert rule.split("  ")[1] == "-" * _cells("社員-山田太郎")


def test_a_table_of_wide_characters_matches_its_expected_layout() -> None:
    table = render_table(
        [{"name": "山田", "mail": "y@example.com"}, {"name": "🎉 x", "mail": "p@example.com"}],
        [("name", "name"), ("mail", "email")],
    )
    assert table == (
        "name  email\n"
        "----  -------------\n"
        "山田  y@example.com\n"
        "🎉 x  p@example.com"
    )


def test_json_goes_to_stdout_alone_and_logs_to_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _static_install(tmp_path, WIDE_USERS)
    code = main(["--config", str(config), "-v", "directory", "test", "--format", "json"])
    assert code == 0
    out = capsys.readouterr()
    document = json.loads(out.out)
    assert document["directory_test"]["users_in_scope"] == 4
    assert {user["directory_id"] for user in document["directory_test"]["users"]} == {
        user["id"] for user in WIDE_USERS
    }


def test_a_reload_of_the_logging_set_up_keeps_the_command_line_options() -> None:
    """``syncd run`` sets logging up again on SIGHUP from the new configuration: the command
    line's options still apply on top of it."""
    import io

    from syncd.logs import LogOverrides, effective_level, set_overrides, setup_logging

    set_overrides(LogOverrides(steps=-1, fmt="json"))
    try:
        handler = setup_logging("WARNING", "text", stream=io.StringIO())
        assert logging.getLevelName(logging.getLogger().level) == "INFO"
        assert isinstance(handler.formatter, JSONFormatter)
    finally:
        set_overrides(LogOverrides())
    assert effective_level("INFO", LogOverrides(steps=-5)) == "DEBUG"
    assert effective_level("ERROR", LogOverrides(steps=9)) == "CRITICAL"
    assert effective_level("DEBUG", LogOverrides(level="warning", steps=-1)) == "WARNING"
