"""`lorascope inspect RUN_FILE [--json]`: what a recording holds, without opening the UI.

Works from the index: only the frames a line of the summary needs are decoded
(the first and last step, edits, status, volatility), so a long run is quick.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
from typing import Any

from .frames import F32Array
from .recording import RunReader

TOP_EXAMPLES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_file", metavar="RUN_FILE", help="a recording (.lsr)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--top", type=int, default=TOP_EXAMPLES, help="how many volatile examples to list (default %(default)s)")


def summarize(path, top: int = TOP_EXAMPLES) -> dict[str, Any]:
    """The summary as a plain map (what --json prints)."""
    with RunReader(path) as reader:
        idx = reader.index()
        start = reader.run_start()
        first_step = next(reader.frames(kinds=["step"]), None)
        last_step = next((reader.frame_at(i) for i in _last_positions(idx, "step", 1)), None)
        status = [reader.frame_at(i) for i in _last_positions(idx, "status", 1)]
        ends = [reader.frame_at(i) for i in _last_positions(idx, "run_end", 1)]
        edits: dict[str, Any] = {}
        for frame in reader.frames(kinds=["edit"]):
            edits[frame.edit_id] = frame  # the last update of each edit is its outcome
        examples = _volatile_examples(reader, top)
        summary: dict[str, Any] = {
            "file": str(reader.path),
            "run_id": start.run_id if start else (reader.frame_at(0).run_id if len(idx) else ""),
            "model": start.model if start else "",
            "adapter": start.adapter if start else {},
            "total_steps": start.total_steps if start else 0,
            "steps": list(idx.step_range() or (0, 0)),
            "step_frames": idx.counts().get("step", 0),
            "records": len(idx),
            "frames_by_kind": idx.counts(),
            "first_loss": _loss(first_step),
            "last_loss": _loss(last_step),
            "state": status[0].state if status else "",
            "end": {"reason": ends[0].reason, "final_loss": ends[0].final_loss, "message": ends[0].message} if ends else None,
            "edits": [_edit_summary(e) for e in edits.values()],
            "volatile_examples": examples,
            "torn": reader.torn,
        }
    return summary


def _last_positions(idx, kind: str, n: int) -> list[int]:
    """Positions of the last n records of a kind, newest first, scanning back from the end."""
    if kind not in idx.kind_names:
        return []
    code = idx.kind_names.index(kind)
    out = []
    for i in range(len(idx) - 1, -1, -1):
        if idx.kind_codes[i] == code:
            out.append(i)
            if len(out) == n:
                break
    return out


def _loss(frame) -> dict[str, Any] | None:
    return {"step": frame.step, "loss": frame.loss} if frame is not None else None


def _edit_summary(e) -> dict[str, Any]:
    return {
        "edit_id": e.edit_id,
        "state": e.state,
        "probe_id": e.probe_id,
        "position": e.position,
        "token": e.token,
        "token_id": e.token_id,
        "target_p": e.target_p,
        "p_token": e.p_token,
        "p_token_start": e.p_token_start,
        "steps_used": e.steps_used,
        "collateral": e.collateral,
        "message": e.message,
    }


def _volatile_examples(reader: RunReader, top: int) -> list[dict[str, Any]]:
    """Flagged spikes by score; without any, the largest per-example gradient norms.

    Reads the plain maps (no dataclasses, arrays only when needed): a long run has
    one volatility frame per step, and this is most of what inspect decodes.
    """
    spikes: list[tuple[float, int, dict]] = []
    norms: list[tuple[float, int, dict]] = []
    tie = 0
    for frame in reader.dicts(kinds=["volatility"]):
        step = frame.get("step", 0)
        for s in frame.get("spikes") or []:
            tie += 1
            item = {k: s.get(k) for k in ("example_id", "score", "loss", "grad_norm", "snippet")}
            item["step"] = step
            _push(spikes, (float(s.get("score") or 0.0), tie, item), top)
        if not spikes and frame.get("grad_norms"):
            norms_of_step = F32Array.from_wire(frame["grad_norms"]).values()
            losses = F32Array.from_wire(frame["losses"]).values() if frame.get("losses") else [math.nan] * len(norms_of_step)
            snippets = frame.get("snippets") or []
            for i, (ex, g, loss) in enumerate(zip(frame.get("example_ids") or [], norms_of_step, losses)):
                if math.isfinite(g):
                    tie += 1
                    text = snippets[i] if i < len(snippets) else ""
                    _push(norms, (g, tie, {"example_id": ex, "step": step, "score": None, "loss": loss, "grad_norm": g, "snippet": text}), top)
    chosen = spikes or norms
    return [item for _, _, item in sorted(chosen, key=lambda t: (-t[0], t[1]))]


def _push(heap: list, item: tuple, top: int) -> None:
    if len(heap) < top:
        heapq.heappush(heap, item)
    elif item[0] > heap[0][0]:
        heapq.heapreplace(heap, item)


# --------------------------------------------------------------------------- text
def format_summary(s: dict[str, Any]) -> str:
    lines = [s["file"]]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<10} {value}")

    row("run id", s["run_id"] or "?")
    adapter = s["adapter"]
    row("model", s["model"] + (f"  (LoRA r={adapter.get('r')} alpha={adapter.get('alpha')})" if adapter else ""))
    total = f" of {s['total_steps']}" if s["total_steps"] else ""
    row("steps", f"{s['steps'][0]}..{s['steps'][1]}{total}  ({s['step_frames']} step frames)")
    state = s["state"] or "?"
    if s["end"]:
        state += f"; run end: {s['end']['reason']}" + (f" ({s['end']['message']})" if s["end"]["message"] else "")
    row("state", state)
    row("frames", f"{s['records']}: " + ", ".join(f"{k} {n}" for k, n in sorted(s["frames_by_kind"].items(), key=lambda kv: -kv[1])))
    if s["first_loss"]:
        row("loss", f"{s['first_loss']['loss']:.4f} at step {s['first_loss']['step']} -> {s['last_loss']['loss']:.4f} at step {s['last_loss']['step']}")
    else:
        row("loss", "no steps recorded")
    if s["edits"]:
        lines.append("  edits")
        for e in s["edits"]:
            token = repr(e["token"]) if e["token"] else f"#{e['token_id']}"
            lines.append(
                f"    {e['edit_id']:<8} {e['state']:<9} {e['probe_id']}@{e['position']} {token}  q={e['target_p']:.2f}  "
                f"p {e['p_token_start']:.3f} -> {e['p_token']:.3f}  ({e['steps_used']} steps)"
            )
    if s["volatile_examples"]:
        by = "spike score" if s["volatile_examples"][0]["score"] is not None else "gradient norm"
        lines.append(f"  most volatile examples (by {by})")
        for v in s["volatile_examples"]:
            score = f"score {v['score']:.2f}  " if v["score"] is not None else ""
            snippet = f"  {v['snippet'][:60]!r}" if v["snippet"] else ""
            lines.append(f"    #{v['example_id']:<6} step {v['step']:<6} {score}loss {v['loss']:.3f}  grad {v['grad_norm']:.3f}{snippet}")
    if s["torn"]:
        lines.append(f"  warning: {s['torn']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    summary = summarize(args.run_file, top=args.top)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2, default=_json_default))
    else:
        print(format_summary(summary))
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
