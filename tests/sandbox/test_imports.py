"""Every sandbox module imports first in a fresh interpreter without meeting a module that is
still initialising (an import cycle through the package's ``__init__``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import syncd.sandbox

PROBE = r"""
import builtins, importlib, sys

real_import = builtins.__import__
cycles = []


def watching(name, globals=None, locals=None, fromlist=(), level=0):
    module = real_import(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__", "?")
    spec = getattr(sys.modules.get(name), "__spec__", None)
    initialising = getattr(spec, "_initializing", False)
    if level == 0 and name.startswith("syncd") and name != importer and initialising:
        cycles.append(f"{first}: {importer} imports {name} while it is initialising")
    return module


builtins.__import__ = watching
for first in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "syncd" or m.startswith("syncd.")]:
        del sys.modules[loaded]
    importlib.import_module(first)
print("\n".join(cycles))
"""


def _sandbox_modules() -> list[str]:
    folder = Path(syncd.sandbox.__file__).parent
    names = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    return ["syncd.sandbox", *(f"syncd.sandbox.{name}" for name in names)]


def test_no_sandbox_module_initialises_through_a_cycle() -> None:
    modules = _sandbox_modules()
    assert "syncd.sandbox.routes" in modules
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
