"""Benchmark: how long ``syncd`` takes to answer the quick commands, against a bare interpreter.

In one run it makes a throwaway installation (SQLite state store, local master key, ``syncd
init``, one finished sync pass recorded so that ``health`` reads it as a service's would), then
times, each ``--rounds`` times and alternating, ``python -c pass`` (the floor)
and ``python -m syncd`` with ``--version``, ``--help``, ``status`` and ``health``, and prints
each command's best wall time in milliseconds and as a ratio of the floor. Target (issue 14):
every one of these under 0.3 s on the reference machine. The best of the rounds is kept (the
machines are shared and noisy); nothing here is asserted by the test suite.

    .venv/bin/python bench/startup.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: list[list[str]] = [["--version"], ["--help"], ["status"], ["health"]]
TARGET_SECONDS = 0.3
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the installation helper in tests/support/
    sys.path.insert(0, str(REPO))

from tests.support.installation import make_installation  # noqa: E402


def wall_time(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    options = parser.parse_args()
    # As installed: the modules' bytecode cached (the warm-up run writes it; a machine-wide
    # PYTHONDONTWRITEBYTECODE would make every run compile syncd's sources again).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="syncd-startup-") as folder:
        config = make_installation(Path(folder))
        runs: dict[str, list[float]] = {"python -c pass": []}
        argvs = {"python -c pass": [sys.executable, "-c", "pass"]}
        for command in COMMANDS:
            name = "syncd " + " ".join(command)
            runs[name] = []
            argvs[name] = [sys.executable, "-m", "syncd", "--config", str(config), *command]
        for name, argv in argvs.items():  # warm the file cache and the bytecode
            warm = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            if warm.returncode != 0:  # a command that fails fast would time nothing real
                sys.exit(f"{name} failed (exit {warm.returncode}): {warm.stderr.strip()[-500:]}")
        for _ in range(options.rounds):
            for name, argv in argvs.items():
                runs[name].append(wall_time(argv, env))
    floor = min(runs["python -c pass"])
    target = f"target < {TARGET_SECONDS * 1000:.0f} ms"
    print(f"{'command':<24} {'best ms':>8} {'x python':>9}  {target}")
    for name, times in runs.items():
        best = min(times)
        verdict = "" if name.startswith("python") else ("ok" if best < TARGET_SECONDS else "SLOW")
        print(f"{name:<24} {best * 1000:>8.1f} {best / floor:>9.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
