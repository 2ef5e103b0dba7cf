"""Snapshot tests: every screen at fixed steps of fixed recordings, at 80×24 and 160×48.

Update with `make snapshots` (pytest --snapshot-update) and review the SVGs by eye.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import SAMPLE_RUNS
from pytest_textual_snapshot import SVGImageExtension
from lorascope.tui.app import LorascopeApp

SMALL, LARGE = (80, 24), (160, 48)
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_runs"
REVIEWED = Path(__file__).parent / "reviewed_sample_runs.json"
"""Sample run name -> hash of the recording its snapshots were reviewed against."""


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_replay_dashboard_mid_run(snap_compare, synthetic_run, size):
    """Step 30: edit e1 active, e2 requested, spikes in the table, heatmap compact at 80×24."""
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=30), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_replay_dashboard_end(snap_compare, synthetic_run, size):
    """Last step: finished, continuation of capital_fr shown base vs tuned, e1 achieved, e2 failed."""
    assert snap_compare(LorascopeApp.replay(synthetic_run), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("panel", ["1", "2", "3", "4"], ids=["loss", "heatmap", "probes", "volatility"])
def test_zoomed_panel(snap_compare, synthetic_run, panel):
    """Each panel zoomed to the whole 80×24 screen (the heatmap then shows all 30 layers)."""
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=45), press=[panel, "z"],
                        terminal_size=SMALL, run_before=settle)


def test_heatmap_since_last_large(snap_compare, synthetic_run):
    """160×48, heatmap in since-last mode: one layer per row with numbers in the cells."""
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=40), press=["2", "m", "m", "z"],
                        terminal_size=LARGE, run_before=settle)


def test_partial_utf8_probe(snap_compare, synthetic_run):
    """The Russian probe: its top next token is half a Cyrillic letter, shown as \\xd0, never as U+FFFD."""
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=50), press=["3", "down"],
                        terminal_size=SMALL, run_before=settle)


def test_help(snap_compare, synthetic_run):
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=10), press=["question_mark"],
                        terminal_size=SMALL, run_before=settle)


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_compare(snap_compare, synthetic_run, synthetic_run_b, size):
    """Loss curves overlaid, heatmap B − A, the same probe in both runs."""
    assert snap_compare(LorascopeApp.compare(synthetic_run, synthetic_run_b), terminal_size=size, run_before=settle)


def _sample_runs_to_snapshot() -> list[Path]:
    """The runs in sample_runs/ plus those reviewed before: a reviewed run that is gone (renamed,
    not committed) is then skipped, and its stored snapshots do not turn into 'unused' failures."""
    reviewed = json.loads(REVIEWED.read_text()) if REVIEWED.exists() else {}
    names = {p.name for p in SAMPLE_RUNS} | set(reviewed)
    return [SAMPLE_DIR / name for name in sorted(names)]


@pytest.mark.parametrize("run", _sample_runs_to_snapshot(), ids=lambda p: p.stem)
@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_sample_run(snap_compare, snapshot, run, size, request):
    """Each recorded real run in sample_runs/, at its last step.

    A run added (or re-recorded) after the snapshots were reviewed is skipped until
    someone runs `make snapshots` and looks at the new SVGs: a snapshot nobody
    reviewed proves nothing.
    """
    stored = Path(__file__).parent / "__snapshots__" / Path(__file__).stem / f"{request.node.name}.svg"
    updating = request.config.getoption("--snapshot-update", default=False)
    reviewed = json.loads(REVIEWED.read_text()) if REVIEWED.exists() else {}
    digest = hashlib.sha256(run.read_bytes()).hexdigest()[:16] if run.exists() else None
    if not updating and (digest is None or not stored.exists() or reviewed.get(run.name) != digest):
        if stored.exists():
            # syrupy counts a stored SVG that no test read as obsolete and fails the session:
            # keep the reviewed snapshot "in use" (it equals itself) while its recording is away.
            assert snapshot.use_extension(SVGImageExtension) == stored.read_text(encoding="utf-8")
        pytest.skip(f"{run.name}: not in sample_runs/, or re-recorded since its snapshot was reviewed "
                    "(make snapshots, then review the SVGs)")
    if updating and digest is not None:
        reviewed[run.name] = digest  # the recording these snapshots were made (and are to be reviewed) from
        REVIEWED.write_text(json.dumps(reviewed, indent=1, sort_keys=True) + "\n")
    assert snap_compare(LorascopeApp.replay(run), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("run", SAMPLE_RUNS, ids=[p.stem for p in SAMPLE_RUNS])
def test_sample_run_fills_every_panel(run):
    """Replaying each sample run gives every panel that run's data (independent of pixels)."""
    from lorascope.tui.replay_model import ReplayModel

    model = ReplayModel(run)
    state = model.state_at(model.last_step)
    assert state.run_start is not None and state.run_start.layers and state.run_start.probes
    assert len(state.history) > 0 and state.metrics is not None
    assert state.deltas is not None and len(state.deltas.absolute.rows()) == len(state.run_start.layers)
    assert state.shifts is not None and state.probe_shift(state.probe_ids()[0]) is not None
    assert state.volatility is not None and len(state.dispersion) > 0
    assert state.state in ("finished", "stopped")
    model.close()
