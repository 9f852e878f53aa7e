"""``syncd sandbox serve``: the local Google API emulator (needs no configuration)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from syncd.errors import EXIT_OK


def cmd_sandbox_serve(args: argparse.Namespace, config: Any) -> int:
    from syncd.sandbox import serve

    serve(args.host, args.port, Path(args.data))
    return EXIT_OK


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser("sandbox", help="the local Google API emulator")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve_cmd = sandbox_sub.add_parser("serve", help="serve the sandbox until interrupted")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8765)
    serve_cmd.add_argument("--data", required=True, help="sandbox data folder")
    serve_cmd.set_defaults(handler=cmd_sandbox_serve, needs_config=False)
