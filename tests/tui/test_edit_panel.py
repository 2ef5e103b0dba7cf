"""The edit panel end to end: a real trainer process on the tiny model, the real app, keys only.

`e` on the probe view pauses the run and opens the panel; a token is picked with the
cursor, q typed, the preview checked against the formula, Enter sends the edit; a
multi-token string is refused with its tokenization; `x` in the list cancels; `r`
resumes and the edit's probability is followed step by step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lorascope.protocol.frames import EditUpdate
from lorascope.protocol.recording import RunReader
from lorascope.protocol.transport import ControlClient
from lorascope.tui.app import LorascopeApp
from lorascope.tui.screens.edit import EditScreen, parse_q
from lorascope.tui.widgets.edit_bars import EditBars, preview_target
from lorascope.tui.widgets.edit_list import EditList, EditTable


async def wait_until(pilot, condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await pilot.pause(0.05)
    return bool(condition())


def start_trainer(model_dir, out_dir) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    command = [sys.executable, "-m", "lorascope.protocol.cli", "train", "--model", str(model_dir),
               "--pub", "tcp://127.0.0.1:0", "--control", "tcp://127.0.0.1:0", "--output-dir", str(out_dir),
               "--run-id", "edit-ui", "--max-steps", "3000", "--batch-size", "2", "--max-length", "96",
               "--logit-shift-every", "1", "--weight-delta-every", "0", "--volatility-every", "0",
               "--resources-every", "0", "--checkpoint-every", "0", "--no-progress"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(out_dir / "trainer.err", "wb"), env=env)
    endpoints = out_dir / "edit-ui" / "endpoints.json"
    deadline = time.monotonic() + 180
    while not endpoints.is_file():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise AssertionError("trainer did not start: " + (out_dir / "trainer.err").read_text()[-2000:])
        time.sleep(0.05)
    return child, json.loads(endpoints.read_text())


def test_parse_q():
    assert parse_q("0.6") == 0.6 and parse_q(".25") == 0.25 and parse_q("60%") == pytest.approx(0.6)
    for bad in ("1.5", "-0.1", "nan", "abc", "150%"):
        with pytest.raises(ValueError, match="q: "):
            parse_q(bad)


def test_preview_is_the_trainer_formula():
    p = [0.5, 0.2, 0.1, None]
    target = preview_target(p, 1, 0.6)
    assert target[1] == 0.6 and target[3] is None
    assert target[0] == pytest.approx(0.5 * 0.4 / 0.8) and target[2] == pytest.approx(0.1 * 0.4 / 0.8)
    assert preview_target([1.0, 0.0], 0, 0.3) == [0.3, 0.0]  # p(t) = 1: nothing to rescale


async def test_edit_panel_against_a_real_trainer(tiny_model_dir, tmp_path):
    child, endpoints = start_trainer(tiny_model_dir, tmp_path)
    try:
        app = LorascopeApp.live(endpoints["pub"], endpoints["control"])
        async with app.run_test(size=(100, 34)) as pilot:
            assert await wait_until(pilot, lambda: app.state.probe_shift("capital-fr") is not None, 120)
            n_tokens = len(app.state.probe_info("capital-fr").token_ids)

            # `e` on the probe view (focused, first probe, last position): the panel opens and pauses the run
            await pilot.press("e")
            assert await wait_until(pilot, lambda: isinstance(app.screen, EditScreen), 10)
            panel = app.screen
            assert (panel.probe_id, panel.position) == ("capital-fr", n_tokens - 1)
            assert await wait_until(pilot, lambda: app.state.state == "paused", 60)
            assert [cmd for _, cmd, _ in app.sent_requests] == ["pause"]

            # pick the second most probable token, type q, check the preview, send
            bars = panel.query_one(EditBars)
            assert await wait_until(pilot, lambda: len(bars.candidates) >= 2, 10)
            await pilot.press("down")
            chosen = bars.selected
            assert bars.cursor == 1 and chosen.token_id is not None
            await pilot.press("v", "ctrl+u", *"0.3", "enter")
            assert bars.q == 0.3
            await pilot.press("plus", "minus", "right_square_bracket", "left_square_bracket")
            assert bars.q == pytest.approx(0.3)
            preview = bars.targets()
            rest = 1 - chosen.p_now
            for i, (candidate, target) in enumerate(zip(bars.candidates, preview)):
                expected = 0.3 if i == 1 else candidate.p_now * 0.7 / rest
                assert target == pytest.approx(expected)
            await pilot.press("enter")
            request_id, cmd, args = app.sent_requests[-1]
            assert cmd == "edit" and args == {"probe_id": "capital-fr", "position": n_tokens - 1, "q": 0.3,
                                              "token_id": chosen.token_id}
            assert await wait_until(pilot, lambda: any(r.id == request_id for r in app.replies), 60)
            reply = next(r for r in app.replies if r.id == request_id)
            assert reply.ok, reply.error
            first = reply.data["edit_id"]
            # "requested" and "active" are two frames; the UI may have folded only the first so far
            assert await wait_until(pilot, lambda: first in app.state.edits
                                    and app.state.edits[first].state == "active", 30)
            assert app.state.edits[first].token_id == chosen.token_id
            table = panel.query_one(EditTable)
            assert await wait_until(pilot, lambda: table.row_count == 1, 5)

            # a typed string that is not one token: refused, the tokenization shown in the status line
            await pilot.press("t", *" Lyonnais", "enter")
            assert bars.selected.typed == " Lyonnais" and bars.selected.token_id is None
            await pilot.press("enter")
            assert app.sent_requests[-1][2]["token"] == " Lyonnais"
            status = panel.query_one("#edit-status")
            assert await wait_until(pilot, lambda: "3 tokens" in str(status.render()), 60)
            assert "' Lyonnais' is 3 tokens: [' Ly', 'onna', 'is']" in str(status.render())
            assert len(app.state.edits) == 1  # nothing was created

            # cancel the first edit from the list
            table.focus()
            await pilot.press("x")
            assert app.sent_requests[-1][1:] == ("cancel_edit", {"edit_id": first})
            assert await wait_until(pilot, lambda: app.state.edits[first].state == "cancelled", 60)

            # a second edit (q = 0.5 on the top token), then resume: its probability is followed step by step
            bars.focus()
            assert bars.cursor == 0  # still on the typed row, listed first
            await pilot.press("down")  # the most probable token
            top = bars.selected
            assert top.token_id is not None and top.p_now == max(c.p_now for c in bars.candidates if c.p_now)
            await pilot.press("v", "ctrl+u", *"0.5", "enter", "enter")
            assert await wait_until(pilot, lambda: len(app.state.edits) == 2, 60)
            second = next(e for e in app.state.edits if e != first)
            await pilot.press("r")
            assert await wait_until(pilot, lambda: app.state.edits[second].steps_used >= 2, 120)
            assert await wait_until(pilot, lambda: table.row_count == 2, 5)
            edit_list = panel.query_one(EditList)
            assert {e.edit_id for e in edit_list.edits} == {first, second}
            await pilot.press("escape")  # back to the dashboard
            assert not isinstance(app.screen, EditScreen)
        with ControlClient(endpoints["control"]) as client:
            client.request("stop", timeout=60)
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    recorded = [f for f in RunReader(tmp_path / "edit-ui" / "run.lsr") if isinstance(f, EditUpdate)]
    states = {}
    for frame in recorded:
        states.setdefault(frame.edit_id, []).append(frame.state)
    assert states[first] == ["requested", "active", "cancelled"]
    assert states[second][:3] == ["requested", "active", "active"]
    followed = [f for f in recorded if f.edit_id == second][2:]  # one frame per training step
    assert [f.steps_used for f in followed] == list(range(1, len(followed) + 1))
    assert [f.step for f in followed] == list(range(followed[0].step, followed[0].step + len(followed)))
    assert all(0.0 < f.p_token < 1.0 and f.target_p == 0.5 for f in followed)
