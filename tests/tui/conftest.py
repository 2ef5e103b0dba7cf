"""Fixtures for the UI tests: deterministic recordings written through the real RunRecorder."""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_run import write_synthetic_run  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RUNS = sorted((REPO / "sample_runs").glob("*.lsr"))


@pytest.fixture(scope="session")
def synthetic_run(tmp_path_factory) -> Path:
    """60 steps of the synthetic run (edits, pause, continuation, spikes)."""
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "synthetic.lsr", steps=60)


@pytest.fixture(scope="session")
def synthetic_run_b(tmp_path_factory) -> Path:
    """A second, different run (other seed, no edits, higher loss, 50 steps) for compare."""
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "synthetic_b.lsr", steps=50, seed=1,
                               with_edits=False, loss_offset=0.3)


@pytest.fixture(autouse=True)
def _no_cursor_blink(monkeypatch):
    """Snapshots must not depend on when the cursor blinked (harlequin's fixture)."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "cursor_blink", False, raising=False)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run `async def` tests in a fresh event loop (Textual's pilot is async; no plugin needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None
