"""The generated man pages and shell completion (docs/gen/docgen.py), judged by man, groff, bash
and zsh themselves, and checked against what ``syncd --help`` prints."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from syncd.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]

# Each test runs man, groff, bash, zsh or pytest: seconds; a hung one fails after this.
pytestmark = pytest.mark.timeout(60)
SYNCD = str(Path(sys.executable).with_name("syncd"))
ZSH_DRIVER = """\
# Types $2 and TAB in an interactive zsh whose fpath starts with $1 (compinit, no user
# config); succeeds once the screen shows $3.
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z "fpath=(${(q)1} \\$fpath); autoload -Uz compinit; compinit -u -D; PROMPT='%% '"
zpty -n -w z "$2"$'\\t'
zpty -r z out "*$3*" && print -r -- "completed: $3"
zpty -d z
"""


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: run .ci/system-deps"
    return found


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `make docs` writes, generated once for this module."""
    out = tmp_path_factory.mktemp("docs")
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen" / "docgen.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def _man(page: Path) -> str:
    """``page`` as man renders it (80 columns); man's warnings fail the test."""
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        [_tool("man"), "--warnings", "-l", str(page)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return re.sub(r".\x08", "", done.stdout)  # overstrike (bold, underline) to plain text


def _section(text: str, heading: str) -> str:
    """The body of the man page's sub-section ``heading`` (up to the next heading)."""
    match = re.search(rf"^   {re.escape(heading)}\n(.*?)(?=^ {{0,3}}\S)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def top_help() -> str:
    return _help()


def _help(*args: str) -> str:
    done = subprocess.run([SYNCD, *args, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("page", ["man8/syncd.8", "man5/syncd.yaml.5"])
def test_man_pages_render_without_warnings(docs: Path, page: str) -> None:
    groff = subprocess.run(
        [_tool("groff"), "-man", "-ww", "-z", "-Tutf8", str(docs / page)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert groff.returncode == 0 and groff.stderr == "", groff.stderr
    text = _man(docs / page)
    assert text.splitlines()[0].split()[0] == Path(page).stem.upper() + f"({page[3]})"
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
        assert f"\n{heading}\n" in text, heading


def test_help_and_man_syncd_agree(docs: Path, top_help: str) -> None:
    text = _man(docs / "man8" / "syncd.8")
    top = top_help
    commands = re.findall(r"^    (\S+)  ", top, re.M)
    assert "sync" in commands and "run" in commands, top
    for command in commands:
        _section(text, f"syncd {command}")
    head = text[text.index("\nOPTIONS\n") : text.index("\nCOMMANDS\n")]
    for option in set(re.findall(r"(?<![\w-])--?[a-z][a-z-]*", top.split("options:", 1)[1])):
        assert re.search(rf"(?<![\w-]){option}\b", head), option
    sync_help = _help("sync")
    sync_options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", sync_help)) - {"--help"}
    assert "--dry-run" in sync_options, sync_help
    sync_man = _section(text, "syncd sync")
    for option in sync_options:
        assert re.search(rf"(?<![\w-]){option}\b", sync_man), option


def test_every_subcommand_and_option_is_in_the_man_page(docs: Path) -> None:
    text = _man(docs / "man8" / "syncd.8")

    def walk(parser: object, path: str) -> None:
        import argparse

        assert isinstance(parser, argparse.ArgumentParser)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    body = _section(text, f"{path} {name}")
                    for sub_action in sub._actions:
                        for option in sub_action.option_strings:
                            if option not in ("-h", "--help"):
                                assert option in body, (f"{path} {name}", option)
                    walk(sub, f"{path} {name}")

    walk(build_parser(), "syncd")


def test_every_exit_code_is_in_the_man_page(docs: Path) -> None:
    import syncd.errors

    text = _man(docs / "man8" / "syncd.8")
    status = text[text.index("\nEXIT STATUS\n") : text.index("\nENVIRONMENT\n")]
    codes = {v for k, v in vars(syncd.errors).items() if k.startswith("EXIT_")}
    assert codes and {int(c) for c in re.findall(r"^       (\d+) ", status, re.M)} == codes


def test_the_configuration_page_lists_the_settings(docs: Path) -> None:
    text = _man(docs / "man5" / "syncd.yaml.5")
    for setting in ("state.url", "kms.local.master_key_file", "kacls.uri", "directory.source"):
        assert re.search(rf"^       {re.escape(setting)}$", text, re.M), setting
    # certificate.validity_days: 1 to 3650, default 365 (from the schema's constraints).
    assert re.search(r"certificate\.validity_days\n\s+integer, 1 to 3650 \(default: 365\)", text)


def _bash_complete(script: Path, *lines: list[str]) -> list[list[str]]:
    """COMPREPLY after bash's completion function for ``syncd`` runs on each of ``lines``
    (one bash that sourced ``script``)."""
    program = f"""
source {shlex.quote(str(script))}
spec=$(complete -p syncd) || exit 3
fn=$(sed -E 's/.* -F ([^ ]+) .*/\\1/' <<<"$spec")
complete_words() {{
  COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
  COMP_LINE="$*"; COMP_POINT=${{#COMP_LINE}}; COMPREPLY=()
  "$fn" syncd "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
  echo "${{COMPREPLY[*]}}"
}}
"""
    program += "".join(f"complete_words {shlex.join(words)}\n" for words in lines)
    done = subprocess.run(
        [_tool("bash"), "--norc", "--noprofile", "-c", program],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    replies = done.stdout.split("\n")[: len(lines)]
    return [reply.split() for reply in replies]


def test_bash_completes_commands_subcommands_and_options(docs: Path, top_help: str) -> None:
    commands = re.findall(r"^    (\S+)  ", top_help, re.M)
    replies = _bash_complete(
        docs / "completion" / "syncd",
        ["syncd", "sy"],
        ["syncd", "google", "key-pairs", "cr"],
        ["syncd", "sync", "--dr"],
        ["syncd", ""],
    )
    assert replies[:3] == [["sync"], ["create"], ["--dry-run"]]
    assert sorted(replies[3]) == sorted(commands)


@pytest.mark.parametrize(
    ("typed", "shown"),
    [("syncd sy", "syncd sync"), ("syncd google key-pairs cr", "key-pairs create")],
)
def test_zsh_completes_from_its_fpath(docs: Path, tmp_path: Path, typed: str, shown: str) -> None:
    zsh = _tool("zsh")
    script = docs / "completion" / "_syncd"
    parsed = subprocess.run([zsh, "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert parsed.returncode == 0 and parsed.stderr == "", parsed.stderr
    driver = tmp_path / "driver.zsh"
    driver.write_text(ZSH_DRIVER)
    try:
        done = subprocess.run(
            [zsh, "-f", str(driver), str(script.parent), typed, shown],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"zsh did not complete {typed!r} to show {shown!r}")
    assert done.stdout.strip() == f"completed: {shown}", done.stderr
