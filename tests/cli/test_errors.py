"""Bad input: exit 2 and one line naming what is wrong and where, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from syncd import __version__
from tests.support.testca import make_test_hierarchy, write_private_file

from .conftest import Installation, base_config


def _one_line_error(result_stderr: str) -> str:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr
    assert "Traceback" not in result_stderr
    assert lines[0].startswith("syncd: ")
    return lines[0]


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"syncd {__version__}"


def test_missing_config_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(tmp_path / "nope.yaml"), "ca", "show"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "nope.yaml: configuration file not found" in _one_line_error(done.stderr)


def test_config_file_from_environment(installation: Installation, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "config", "check"],
        capture_output=True,
        text=True,
        env={"SYNCD_CONFIG": str(tmp_path / "from-env.yaml"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 2
    assert "from-env.yaml: configuration file not found" in _one_line_error(done.stderr)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kms": {"local": {"master_key_path": "x"}}}, "kms.local.master_key_path: unknown key"),
        ({"pipeline": {"workers": "four"}}, "pipeline.workers: Input should be a valid integer"),
    ],
)
def test_unknown_key_and_wrong_type(
    installation: Installation, change: dict[str, object], expected: str
) -> None:
    config = {**base_config(installation.root, "sqlite:///unused.db"), **change}
    installation.write_config(**config)
    result = installation.syncd("config", "check")
    assert result.code == 2
    assert expected in _one_line_error(result.stderr)


def test_master_key_problems(installation: Installation) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    master = inst.root / "master.key"
    master.chmod(0o644)
    result = inst.syncd("cert", "issue", "a@example.com", "--out", str(inst.root / "out"))
    assert result.code == 2
    assert "kms.local.master_key_file:" in _one_line_error(result.stderr)
    assert "(mode 0644)" in result.stderr

    master.unlink()
    master.mkdir(mode=0o700)  # unreadable as a key file, even for root
    result = inst.syncd("cert", "issue", "a@example.com", "--out", str(inst.root / "out"))
    assert result.code == 2
    line = _one_line_error(result.stderr)
    assert "kms.local.master_key_file: cannot read" in line and "not a regular file" in line


def test_wrong_pkcs12_password(installation: Installation) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    wrong = inst.root / "wrong.pass"
    write_private_file(wrong, b"not the password")
    result = inst.syncd(
        "ca", "import", str(inst.hierarchy.issuer_p12), "--password-file", str(wrong)
    )
    assert result.code == 2
    assert "wrong password or damaged PKCS#12 file" in _one_line_error(result.stderr)


def test_password_from_environment(installation: Installation) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    result = inst.syncd(
        "ca",
        "import",
        str(inst.hierarchy.issuer_p12),
        "--password-env",
        "SYNCD_TEST_P12",
        env={"SYNCD_TEST_P12": inst.password_file.read_text()},
    )
    assert result.code == 0, result.stderr
    unset = inst.syncd(
        "ca",
        "import",
        str(inst.hierarchy.issuer_p12),
        "--password-env",
        "SYNCD_TEST_UNSET_VAR",
        "--replace",
    )
    assert unset.code == 2
    assert "SYNCD_TEST_UNSET_VAR is not set" in _one_line_error(unset.stderr)


def test_pkcs12_without_private_key(installation: Installation) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    bundle = pkcs12.serialize_java_truststore(
        [pkcs12.PKCS12Certificate(inst.hierarchy.intermediate_cert, b"issuer")],
        serialization.BestAvailableEncryption(b"pw"),
    )
    path = inst.root / "certs-only.p12"
    path.write_bytes(bundle)
    write_private_file(inst.root / "pw", b"pw")
    result = inst.syncd("ca", "import", str(path), "--password-file", str(inst.root / "pw"))
    assert result.code == 2
    assert "has no private key" in _one_line_error(result.stderr)


def test_root_as_issuer_is_refused(installation: Installation, tmp_path: Path) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    hierarchy = inst.hierarchy
    bundle = pkcs12.serialize_key_and_certificates(
        b"root",
        hierarchy.root_key,
        hierarchy.root_cert,
        None,
        serialization.BestAvailableEncryption(b"pw"),
    )
    (tmp_path / "root.p12").write_bytes(bundle)
    write_private_file(tmp_path / "pw", b"pw")
    result = inst.syncd(
        "ca", "import", str(tmp_path / "root.p12"), "--password-file", str(tmp_path / "pw")
    )
    assert result.code == 2
    line = _one_line_error(result.stderr)
    assert "issuer refused" in line and "root" in line.lower()


def test_weak_issuer_key_is_refused(installation: Installation, tmp_path: Path) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    weak = make_test_hierarchy(tmp_path / "weak", password=b"pw", rsa_bits=1024)
    write_private_file(tmp_path / "pw", b"pw")
    assert weak.issuer_p12 is not None
    result = inst.syncd(
        "ca", "import", str(weak.issuer_p12), "--password-file", str(tmp_path / "pw")
    )
    assert result.code == 2
    assert "1024" in _one_line_error(result.stderr)


def test_outdated_schema_is_refused(installation: Installation) -> None:
    result = installation.syncd("ca", "show")
    assert result.code == 2
    assert "syncd db upgrade" in _one_line_error(result.stderr)
    installation.ok("db", "upgrade")
    assert installation.ok("ca", "show").startswith("no issuing CA imported")


def test_run_lock_held_by_another_process_exits_3(installation: Installation) -> None:
    inst = installation
    inst.ok("init", "--generate-kacls-key")
    inst.import_ca()
    url = base_config(inst.root, "x")  # only for its shape
    del url
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from syncd.config import load_config\n"
            "from syncd.state.lock import acquire\n"
            "from pathlib import Path\n"
            "c = load_config(Path(sys.argv[1]))\n"
            "with acquire(c.state.url, lock_file=c.state.lock_file):\n"
            "    print('held', flush=True)\n"
            "    time.sleep(60)\n",
            str(inst.config_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = inst.syncd("cert", "issue", "a@example.com", "--out", str(inst.root / "out"))
        assert result.code == 3
        assert "holds the run lock" in _one_line_error(result.stderr)
    finally:
        holder.kill()
        holder.wait()
    inst.ok("cert", "issue", "a@example.com", "--out", str(inst.root / "out"))
