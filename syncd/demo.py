"""``make demo``: a whole rollout rehearsed locally on the embedded defaults.

It starts from scratch in ``demo/`` (removed first): generates a demo root and issuing
intermediate to Google's S/MIME profile, starts the Google sandbox on a free loopback port,
writes a directory of demo users, initialises syncd with ``config/demo.yaml``, imports the
issuer, runs one ``syncd sync --once`` and shows the status table, runs a second pass that
has nothing to do, and stops the sandbox. Each ``syncd`` command it runs is printed first.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from syncd.cli import main as syncd_main
from syncd.errors import EXIT_OK
from syncd.pki.testca import make_test_hierarchy, write_private_file
from syncd.sandbox import SandboxServer, create_service_account, init_sandbox_data

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "config" / "demo.yaml"
DOMAIN = "demo.example"
NAMES = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "xena",
    "yusuf",
    "zoe",
    "amir",
    "bea",
    "chen",
    "dara",
    "elif",
    "femi",
    "gita",
    "hugo",
]
DISABLED = {"mallory", "trent"}


def _syncd(config: Path, *args: str) -> None:
    print(f"\n$ syncd {' '.join(args)}", flush=True)
    code = syncd_main(["--config", str(config), *args])
    if code != EXIT_OK:
        raise SystemExit(f"demo: `syncd {' '.join(args)}` exited {code}")


def _write_users(path: Path) -> None:
    users = [
        {"email": f"{name}@{DOMAIN}", "id": f"emp-{number:04d}", "enabled": name not in DISABLED}
        for number, name in enumerate(NAMES, start=1)
    ]
    path.write_text(yaml.safe_dump({"users": users}, sort_keys=False))


def _config_for(sandbox_url: str, demo_dir: Path) -> Path:
    """config/demo.yaml with the sandbox's real endpoint, as demo/syncd.yaml."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["google"]["endpoint"] = sandbox_url
    text = yaml.safe_dump(data, sort_keys=False).replace("../demo/", f"{demo_dir}/")
    path = demo_dir / "syncd.yaml"
    path.write_text(text)
    return path


def run_demo(demo_dir: Path) -> None:
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    ca_dir = demo_dir / "ca"
    password = secrets.token_urlsafe(24).encode()
    print(f"generating a demo root CA and issuing intermediate in {ca_dir}")
    hierarchy = make_test_hierarchy(
        ca_dir,
        password=password,
        organization="syncd demo",
        crl_url="http://pki.demo.example/issuing-ca.crl",
    )
    write_private_file(ca_dir / "issuer.pass", password)
    assert hierarchy.issuer_p12 and hierarchy.root_pem

    root_pem = hierarchy.root_cert.public_bytes(serialization.Encoding.PEM)
    mailboxes = [f"{name}@{DOMAIN}" for name in NAMES] + [f"admin@{DOMAIN}"]
    init_sandbox_data(demo_dir / "sandbox", DOMAIN, mailboxes, root_pem)
    with SandboxServer(demo_dir / "sandbox") as sandbox:
        sandbox.start()
        print(f"Google sandbox listening on {sandbox.url}")
        key_file = demo_dir / "service-account.json"
        key_info = create_service_account(
            demo_dir / "sandbox", "syncd@syncd-demo.iam.gserviceaccount.com", sandbox.token_uri
        )
        write_private_file(key_file, json.dumps(key_info).encode())
        _write_users(demo_dir / "users.yaml")
        config = _config_for(sandbox.url, demo_dir)

        _syncd(config, "init", "--generate-kacls-key")
        _syncd(
            config,
            "ca",
            "import",
            str(hierarchy.issuer_p12),
            "--password-file",
            str(ca_dir / "issuer.pass"),
            "--chain",
            str(hierarchy.root_pem),
        )
        _syncd(config, "ca", "show")
        _syncd(config, "sync", "--once")
        _syncd(config, "status")
        _syncd(config, "sync", "--once")
    print(f"\nsandbox stopped; the demo's state is in {demo_dir}. Try:")
    print("  .venv/bin/syncd --config config/demo.yaml status --format json")
    print(f"  .venv/bin/syncd --config config/demo.yaml history --user alice@{DOMAIN}")


def main() -> int:
    run_demo(REPO / "demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
