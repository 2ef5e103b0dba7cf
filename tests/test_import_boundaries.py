"""The dependency rule, checked in a fresh interpreter: a watching laptop needs no torch.

protocol imports neither torch nor textual nor numpy; tui never imports torch;
trainer never imports tui. Every module of the package is imported, not just
its __init__, so a stray import deep inside is caught too.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_PROBE = r"""
import importlib, json, pkgutil, sys
package = importlib.import_module(sys.argv[1])
failed = {}
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    try:
        importlib.import_module(info.name)
    except Exception as exc:  # report, do not hide: a module that cannot import is a bug too
        failed[info.name] = f"{type(exc).__name__}: {exc}"
top = sorted({name.split(".")[0] for name in sys.modules})
print(json.dumps({"top": top, "lorascope": sorted(n for n in sys.modules if n.startswith("lorascope.")), "failed": failed}))
"""


def _imported_by(package: str) -> dict:
    result = subprocess.run([sys.executable, "-c", _PROBE, package], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("lorascope.protocol", {"torch", "textual", "numpy", "transformers", "peft"}),
        ("lorascope.tui", {"torch", "transformers", "peft", "accelerate"}),
    ],
)
def test_package_does_not_pull_forbidden_dependencies(package, forbidden):
    seen = _imported_by(package)
    assert not seen["failed"], f"modules of {package} that do not import: {seen['failed']}"
    assert forbidden.isdisjoint(seen["top"]), f"{package} pulled in {sorted(forbidden & set(seen['top']))}"


def test_protocol_does_not_import_the_other_halves():
    seen = _imported_by("lorascope.protocol")
    assert not [n for n in seen["lorascope"] if n.startswith(("lorascope.trainer", "lorascope.tui"))]


def test_trainer_never_imports_the_tui():
    seen = _imported_by("lorascope.trainer")
    assert not seen["failed"], f"modules of lorascope.trainer that do not import: {seen['failed']}"
    assert "textual" not in seen["top"] and not [n for n in seen["lorascope"] if n.startswith("lorascope.tui")]
