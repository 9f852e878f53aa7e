"""``syncd sandbox serve`` (the local Google API emulator) and ``syncd demo`` (a whole rollout
rehearsed on it); neither needs a configuration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from syncd.errors import EXIT_OK


def cmd_sandbox_serve(args: argparse.Namespace, config: Any) -> int:
    from syncd.sandbox import serve

    serve(args.host, args.port, Path(args.data), threads=args.threads)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, config: Any) -> int:
    from syncd.cli.demo import run_demo

    return run_demo(args.dir)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser("sandbox", help="the local Google API emulator")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", metavar="ACTION", required=True)
    serve_cmd = sandbox_sub.add_parser("serve", help="serve the sandbox until interrupted")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=8765)
    serve_cmd.add_argument("--data", required=True, help="sandbox data folder")
    serve_cmd.add_argument(
        "--threads", type=int, default=64, help="worker threads: requests served at once (64)"
    )
    serve_cmd.set_defaults(handler=cmd_sandbox_serve, needs_config=False)

    demo = commands.add_parser(
        "demo", help="rehearse a whole rollout on a local sandbox, in a folder of its own"
    )
    demo.add_argument(
        "--dir", type=Path, default=Path("demo"),
        help="the demo's folder, made or replaced (only if it holds a previous demo): ./demo",
    )
    demo.set_defaults(handler=cmd_demo, needs_config=False)
