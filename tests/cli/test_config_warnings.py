"""``syncd config check`` warns (exit 0) about settings that are valid but unwise."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .conftest import Installation

REPO = Path(__file__).parents[2]


def test_config_check_warns_without_crl_distribution_point(
    sqlite_installation: Installation,
) -> None:
    inst = sqlite_installation
    assert inst.syncd("config", "check").stderr == ""  # base_config sets one
    config = yaml.safe_load(inst.config_path.read_text())
    config["certificate"]["crl_distribution_points"] = []
    inst.write_config(**config)

    result = inst.syncd("config", "check")
    assert result.code == 0
    assert result.stderr.splitlines() == [
        "warning: certificate.crl_distribution_points: empty; leaves are issued without a CRL "
        "distribution point (Google requires a public HTTP CRL distribution point on the issuing "
        "intermediate, and leaves carry one in practice); set it, for example to "
        "[http://crl.example.com/issuing.crl]"
    ]
    assert result.stdout.rstrip().endswith("configuration is valid")
    document = json.loads(inst.ok("config", "check", "--format", "json"))["config"]
    assert document["valid"] is True
    assert [w.split(":")[0] for w in document["warnings"]] == [
        "certificate.crl_distribution_points"
    ]


def test_example_configuration_shows_a_crl_distribution_point() -> None:
    text = (REPO / "config" / "example.yaml").read_text()
    section = text[text.index("\ncertificate:") : text.index("\ngoogle:")]
    commented = [line for line in section.splitlines() if line.lstrip().startswith("#   - ")]
    assert commented and all(" http://" in line for line in commented)
    assert "\n  # crl_distribution_points:\n" in section  # the example, ready to uncomment
    assert "\n  crl_distribution_points: []\n" in section  # the default stays empty
