"""``make demo``: a whole syncd installation rehearsed locally on the embedded defaults.

It starts from scratch in a demo folder (removed first): generates a demo root and issuing
intermediate to Google's profile, initialises syncd with ``config/demo.yaml``, imports the
issuer, and issues credentials for a few demo users, printing each ``syncd`` command it runs.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from syncd.cli import main as syncd_main
from syncd.errors import EXIT_OK
from syncd.pki.chain import parse_pkcs7
from syncd.pki.testca import make_test_hierarchy, write_private_file

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "demo.yaml"
DEMO_USERS = ["alice@demo.example", "bob@demo.example", "carol@demo.example"]


def _syncd(*args: str) -> None:
    print(f"\n$ syncd {' '.join(args)}", flush=True)
    code = syncd_main(["--config", str(DEMO_CONFIG), *args])
    if code != EXIT_OK:
        raise SystemExit(f"demo: `syncd {' '.join(args)}` exited {code}")


def run_demo(demo_dir: Path) -> None:
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    ca_dir = demo_dir / "ca"
    password = secrets.token_urlsafe(24).encode()
    print(f"generating a demo root and issuing intermediate in {ca_dir}")
    hierarchy = make_test_hierarchy(
        ca_dir,
        password=password,
        organization="syncd demo",
        crl_url="http://pki.demo.example/issuing-ca.crl",
    )
    write_private_file(ca_dir / "issuer.pass", password)
    assert hierarchy.issuer_p12 and hierarchy.root_pem and hierarchy.intermediate_pem

    _syncd("init", "--generate-kacls-key")
    _syncd("config", "check")
    _syncd(
        "ca",
        "import",
        str(hierarchy.issuer_p12),
        "--password-file",
        str(ca_dir / "issuer.pass"),
        "--chain",
        str(hierarchy.root_pem),
    )
    _syncd("ca", "show")
    out_dir = demo_dir / "out"
    for email in DEMO_USERS:
        _syncd("cert", "issue", email, "--out", str(out_dir))

    chain_file = out_dir / f"{DEMO_USERS[0]}.p7pem"
    issuer_subject = hierarchy.intermediate_cert.subject
    leaf = next(c for c in parse_pkcs7(chain_file.read_bytes()) if c.subject != issuer_subject)
    leaf_pem = out_dir / "leaf.pem"
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    command = [
        "openssl",
        "verify",
        "-purpose",
        "smimesign",
        "-CAfile",
        str(hierarchy.root_pem),
        "-untrusted",
        str(hierarchy.intermediate_pem),
        str(leaf_pem),
    ]
    print(f"\n$ {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)
    print(f"\ndemo finished; everything it made is in {demo_dir}")


def main() -> int:
    run_demo(REPO / "demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
