"""``syncd demo --dir DIR`` (``make demo``: ``demo/``): a whole rollout rehearsed locally on
the embedded defaults, from an installed syncd (no repository needed).

It starts from scratch in DIR (removed first if it holds a previous demo; any other non-empty
folder is refused): generates a demo root and issuing intermediate to Google's S/MIME profile,
starts the Google sandbox on a free loopback port, writes a directory of demo users,
initialises syncd with the packaged ``demo.yaml`` (as DIR/syncd.yaml), imports the issuer,
runs one ``syncd sync --once`` and shows the status table, runs a second pass that has nothing
to do, and stops the sandbox. Each ``syncd`` command it runs is printed first.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
from importlib import resources
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from syncd.errors import EXIT_OK, EXIT_USAGE
from syncd.pki.rehearsal_ca import make_rehearsal_hierarchy, write_private_file
from syncd.sandbox import SandboxServer, create_service_account, init_sandbox_data

DEMO_CONFIG = "demo.yaml"
"""The demo's configuration template, package data next to this module."""
MARKER = ".syncd-demo"
"""Written in DIR at start: DIR holds a demo, which a later run may remove."""
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


def _syncd(config: Path, *args: str) -> int:
    from syncd.cli import main as syncd_main  # the CLI imports every command: load it late

    print(f"\n$ syncd {' '.join(args)}", flush=True)
    code = syncd_main(["--config", str(config), *args])
    if code != EXIT_OK:
        print(f"demo: `syncd {' '.join(args)}` exited {code}", file=sys.stderr)
    return code


def _write_users(path: Path) -> None:
    users = [
        {"email": f"{name}@{DOMAIN}", "id": f"emp-{number:04d}", "enabled": name not in DISABLED}
        for number, name in enumerate(NAMES, start=1)
    ]
    path.write_text(yaml.safe_dump({"users": users}, sort_keys=False))


def demo_config(sandbox_url: str) -> dict[str, object]:
    """The packaged demo.yaml with the sandbox's real endpoint."""
    text = resources.files("syncd").joinpath(DEMO_CONFIG).read_text(encoding="utf-8")
    data: dict[str, object] = yaml.safe_load(text)
    google = data["google"]
    assert isinstance(google, dict)
    google["endpoint"] = sandbox_url
    return data


def _config_for(sandbox_url: str, demo_dir: Path) -> Path:
    """demo.yaml with the sandbox's endpoint, as DIR/syncd.yaml (paths relative to DIR)."""
    path = demo_dir / "syncd.yaml"
    path.write_text(yaml.safe_dump(demo_config(sandbox_url), sort_keys=False))
    return path


def reusable(directory: Path) -> bool:
    """Whether the demo may (re)create ``directory``: absent, empty, or a previous demo's
    (its marker, or the layout an older demo left: syncd.yaml, users.yaml, sandbox/)."""
    if not directory.exists():
        return True
    if not directory.is_dir():
        return False  # a file: refused
    if (directory / MARKER).exists() or not any(directory.iterdir()):
        return True
    legacy = ("syncd.yaml", "users.yaml", "sandbox")
    return all((directory / name).exists() for name in legacy)


def _rehearse(demo_dir: Path) -> int:
    ca_dir = demo_dir / "ca"
    password = secrets.token_urlsafe(24).encode()
    print(f"generating a demo root CA and issuing intermediate in {ca_dir}")
    hierarchy = make_rehearsal_hierarchy(
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
        print(f"Google sandbox listening on {sandbox.url}")
        key_file = demo_dir / "service-account.json"
        key_info = create_service_account(
            demo_dir / "sandbox", "syncd@syncd-demo.iam.gserviceaccount.com", sandbox.token_uri
        )
        write_private_file(key_file, json.dumps(key_info).encode())
        _write_users(demo_dir / "users.yaml")
        config = _config_for(sandbox.url, demo_dir)
        steps: list[list[str]] = [
            ["init", "--generate-kacls-key"],
            [
                "ca",
                "import",
                str(hierarchy.issuer_p12),
                "--password-file",
                str(ca_dir / "issuer.pass"),
                "--chain",
                str(hierarchy.root_pem),
            ],
            ["ca", "show"],
            ["sync", "--once"],
            ["status"],
            ["sync", "--once"],
        ]
        for step in steps:
            code = _syncd(config, *step)
            if code != EXIT_OK:
                return code
    print(f"\nsandbox stopped; the demo's state is in {demo_dir}. Try:")
    print(f"  syncd --config {config} status --format json")
    print(f"  syncd --config {config} history --user alice@{DOMAIN}")
    return EXIT_OK


def run_demo(directory: Path) -> int:
    """Rehearse a rollout in ``directory``; the exit code of the first failing step, else 0.

    Refuses (exit 2, one line on stderr) a path that is a file or a non-empty folder that
    does not hold a previous demo: the demo removes what it finds there.
    """
    demo_dir = directory.absolute()
    if not reusable(demo_dir):
        print(
            f"demo: {directory} exists and does not hold a previous demo; "
            "give an empty or new folder with --dir",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if demo_dir.exists():
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    (demo_dir / MARKER).write_text("written by `syncd demo`: this folder may be removed\n")
    return _rehearse(demo_dir)
