"""Control requests, honoured between optimizer steps: pause, resume, step N, save, stop, edits, continuations.

The training loop calls `between_steps(step)` before every step. It answers every
waiting request (exactly one reply each), and while the run is paused it keeps
polling (the publisher's own thread keeps the heartbeats going) until a resume,
a step N, a stop or Ctrl-C. Nothing a client sends can raise out of here: a bad
request gets an error reply and training goes on as before.
"""

from __future__ import annotations

import time
from typing import Callable

from lorascope.protocol.errors import UserError
from lorascope.protocol.frames import Continuation, Status

PAUSED_POLL_S = 0.05
MAX_CONTINUATION_TOKENS = 200


class RunControl:
    def __init__(self, server, stream, *, save: Callable[[int, str], str], edits=None, logit_observer=None,
                 total_steps: int = 0, progress=None):
        self.server = server  # ControlServer, or None (no control socket: e.g. a non-main rank)
        self.stream = stream
        self.save = save  # (step, reason) -> checkpoint path
        self.edits = edits
        self.logit_observer = logit_observer
        self.total_steps = total_steps
        self.progress = progress
        self.state = "starting"  # the loop sets "running" right after RunStart
        self.steps_left: int | None = None  # after `step N`: pause again once N steps are done
        self.stop_requested = False
        self.interrupted = False
        self.last_loss: float | None = None

    # ----------------------------------------------------------------- loop side
    def between_steps(self, step: int) -> None:
        """Answer waiting requests; block here while paused (until resume, step N, stop or interrupt)."""
        self._answer_all(step)
        while self.state == "paused" and not (self.stop_requested or self.interrupted):
            time.sleep(PAUSED_POLL_S)
            self._answer_all(step)

    @property
    def should_end(self) -> bool:
        return self.stop_requested or self.interrupted

    def step_done(self, step: int) -> None:
        """Count down a `step N` request; pause when it is used up."""
        if self.steps_left is not None:
            self.steps_left -= 1
            if self.steps_left <= 0:
                self.steps_left = None
                self.set_state("paused", step, f"paused after stepping (step {step})")

    def set_state(self, state: str, step: int, message: str = "") -> None:
        if state == self.state and not message:
            return
        self.state = state
        self.stream.emit(Status(step=step, state=state, message=message))
        if self.progress is not None:
            self.progress.message(f"[{state}] {message}".rstrip() if message else f"[{state}]")

    # ----------------------------------------------------------------- requests
    def _answer_all(self, step: int) -> None:
        if self.server is None:
            return
        for request in self.server.poll():
            try:
                data = self._handle(request.cmd, request.args or {}, step)
            except UserError as exc:  # includes EditError: the message is the reply
                request.fail(str(exc))
            except Exception as exc:  # noqa: BLE001 - a request must never take training down
                request.fail(f"internal error handling {request.cmd!r}: {type(exc).__name__}: {exc}")
            else:
                request.reply(data)

    def _handle(self, cmd: str, args: dict, step: int) -> dict:
        if cmd == "pause":
            self.steps_left = None
            if self.state != "paused":
                self.set_state("paused", step, f"paused at step {step}")
            return self._status(step)
        if cmd == "resume":
            self.steps_left = None
            if self.state != "running":
                self.set_state("running", step, f"resumed at step {step}")
            return self._status(step)
        if cmd == "step":
            n = args.get("n", 1)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise UserError(f"step: 'n' must be a positive integer, got {n!r}")
            self.steps_left = n
            self.set_state("running", step, f"stepping {n} step(s) from step {step}")
            return {**self._status(step), "steps": n}
        if cmd == "save":
            return {**self._status(step), "path": self.save(step, "save")}
        if cmd == "stop":
            self.stop_requested = True
            return {**self._status(step), "stopping": True}
        if cmd == "status":
            return self._status(step)
        if cmd == "edit":
            if self.edits is None:
                raise UserError("edit: manual edits are not available in this run")
            frames = self.edits.request(args, step)
            for frame in frames:
                self.stream.emit(frame)
            last = frames[-1]
            return {"edit_id": last.edit_id, "state": last.state, "p_token": last.p_token,
                    "kl_to_target": last.kl_to_target}
        if cmd == "cancel_edit":
            if self.edits is None:
                raise UserError("cancel_edit: manual edits are not available in this run")
            frame = self.edits.cancel(args.get("edit_id"), step)
            self.stream.emit(frame)
            return {"edit_id": frame.edit_id, "state": frame.state}
        if cmd == "continue":
            return self._continuation(args, step)
        raise UserError(f"unknown command {cmd!r}")

    def _continuation(self, args: dict, step: int) -> dict:
        if self.logit_observer is None:
            raise UserError("continue: the logit-shift observer is off in this run (no probes)")
        probe_id = args.get("probe_id")
        known = self.logit_observer.probes.ids
        if probe_id not in known:
            raise UserError(f"continue: probe_id {probe_id!r} is not a probe of this run (probes: {', '.join(known)})")
        n = args.get("max_new_tokens", 20)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CONTINUATION_TOKENS:
            raise UserError(f"continue: 'max_new_tokens' must be an integer in 1..{MAX_CONTINUATION_TOKENS}, got {n!r}")
        base_text, tuned_text = self.logit_observer.continuation(probe_id, max_new_tokens=n)
        self.stream.emit(Continuation(step=step, probe_id=probe_id, base_text=base_text, tuned_text=tuned_text,
                                      max_new_tokens=n))
        return {"probe_id": probe_id, "base_text": base_text, "tuned_text": tuned_text}

    def _status(self, step: int) -> dict:
        return {"state": self.state, "step": step, "total_steps": self.total_steps,
                "loss": self.last_loss, "steps_left": self.steps_left}
