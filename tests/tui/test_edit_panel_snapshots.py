"""Snapshots of the edit panel over the synthetic recording (replay: nothing is sent), 80×24 and 160×48.

Update with `make snapshots` (pytest --snapshot-update) and review the SVGs by eye.
"""

from __future__ import annotations

import pytest

from lorascope.tui.app import LorascopeApp

SMALL, LARGE = (80, 24), (160, 48)


async def settle(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.3)  # the panel polls the run state every 0.2 s


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["80x24", "160x48"])
def test_edit_panel(snap_compare, synthetic_run, size):
    """Step 30, capital_fr's last position: cursor on the second token, q raised to 0.6, the target
    preview beside the current bars; the list shows e1 active and e2 requested."""
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=30), press=["3", "e", "down", "plus", "plus"],
                        terminal_size=size, run_before=settle)


def test_edit_panel_typed_token(snap_compare, synthetic_run):
    """A typed token is listed first with its probability unknown ('?') until the trainer looks it up."""
    assert snap_compare(LorascopeApp.replay(synthetic_run, start_step=30),
                        press=["3", "e", "t", *" Marseille", "enter", "minus"], terminal_size=SMALL, run_before=settle)
