"""The rehearsal: its packaged configuration is the installation config/demo.yaml describes,
it never removes a folder that is not a previous demo, and it runs to the same outcome in a
given folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.cli.demo import MARKER, demo_config, reusable, run_demo
from syncd.config import load_config, parse_config
from syncd.errors import EXIT_OK, EXIT_USAGE

REPO = Path(__file__).resolve().parents[2]


def test_packaged_config_is_the_installation_config_demo_yaml_describes() -> None:
    described = load_config(REPO / "config" / "demo.yaml")
    packaged = parse_config(demo_config(described.google.endpoint), REPO / "demo" / "syncd.yaml")
    assert packaged.model_dump() == described.model_dump()


def test_packaged_config_points_google_at_the_sandbox() -> None:
    google = demo_config("http://127.0.0.1:41234/")["google"]
    assert isinstance(google, dict) and google["endpoint"] == "http://127.0.0.1:41234/"


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        ({}, True),
        ({MARKER: ""}, True),
        ({"syncd.yaml": "", "users.yaml": "", "sandbox/": None}, True),
        ({"notes.txt": "mine"}, False),
        ({"syncd.yaml": "", "users.yaml": ""}, False),
    ],
)
def test_which_folders_the_demo_may_replace(
    tmp_path: Path, contents: dict[str, str | None], expected: bool
) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    for name, text in contents.items():
        if text is None:
            (folder / name).mkdir()
        else:
            (folder / name).write_text(text)
    assert reusable(folder) is expected


def test_a_folder_of_other_files_is_refused_and_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert run_demo(tmp_path) == EXIT_USAGE
    assert (tmp_path / "notes.txt").read_text() == "mine"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "--dir" in err[0]
    (tmp_path / "file").write_text("")
    assert run_demo(tmp_path / "file") == EXIT_USAGE


def test_demo_replaces_a_previous_demo_and_runs_to_its_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "rehearsal"
    folder.mkdir()
    (folder / MARKER).write_text("")
    (folder / "leftover").write_text("")
    assert run_demo(folder) == EXIT_OK
    out = capsys.readouterr().out
    assert "pass 1: 28 done, 0 failed, 0 held" in out
    assert "pass 2: 0 done, 0 failed, 0 held" in out
    assert not (folder / "leftover").exists() and (folder / MARKER).exists()
    assert load_config(folder / "syncd.yaml").state.url == f"sqlite:///{folder}/state.db"
