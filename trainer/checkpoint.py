"""Adapter checkpoints: PEFT format plus what a resume needs, always written atomically.

A checkpoint is a folder `checkpoint-<step>/` in the run directory:
    adapter_config.json, adapter_model.safetensors   (model.save_pretrained: PeftModel.from_pretrained loads it)
    optimizer.pt, scheduler.pt                        (torch state dicts)
    trainer_state.json                                (step, epoch, edits, config; written last)
It is written into a hidden temporary folder and renamed into place, so a kill at
any moment leaves either the previous checkpoint or the new one, never half of one.
Older checkpoints are removed only after the new one is in place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lorascope.protocol.errors import UserError

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def save_checkpoint(run_dir, model, *, step: int, optimizer=None, scheduler=None, state: dict[str, Any] | None = None,
                    name: str | None = None, keep: int = 1) -> Path:
    """Write `checkpoint-<step>` (or `name`) atomically; keep the newest `keep` step checkpoints. Returns its path."""
    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / (name or f"checkpoint-{step:06d}")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=run_dir))
    try:
        model.save_pretrained(tmp)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **(state or {})}, indent=1, default=str), encoding="utf-8")
        _fsync_dir(tmp)
        if final.exists():  # same step saved twice (save, then stop): replace it, old one aside first
            aside = run_dir / f".{final.name}.old-{os.getpid()}"
            os.rename(final, aside)
            os.rename(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if name is None:
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir) -> list[Path]:
    """Complete step checkpoints of a run, oldest first (temporary folders are never listed)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        m = _CHECKPOINT.match(child.name)
        if m and (child / STATE_FILE).is_file() and (child / "adapter_model.safetensors").is_file():
            found.append((int(m.group(1)), child))
    return [path for _, path in sorted(found)]


def find_checkpoint(path) -> Path:
    """A checkpoint folder from a checkpoint path or a run directory (its newest complete one, by step)."""
    path = Path(path).expanduser()
    if (path / STATE_FILE).is_file():
        return path
    candidates = list_checkpoints(path)
    final = path / "adapter"
    if (final / STATE_FILE).is_file() and (final / "adapter_model.safetensors").is_file():
        candidates.append(final)
    if not candidates:
        raise UserError(f"resume: no complete checkpoint in {path} (looked for checkpoint-*/ and adapter/ with {STATE_FILE})")
    return max(candidates, key=_step_of)


def _step_of(folder: Path) -> int:
    try:
        return int(json.loads((folder / STATE_FILE).read_text(encoding="utf-8")).get("step", -1))
    except (OSError, ValueError, AttributeError):
        return -1


def load_checkpoint(path, model, *, optimizer=None, scheduler=None) -> dict[str, Any]:
    """Load adapter weights (and optimizer/scheduler state when given) into a peft model; returns trainer_state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = find_checkpoint(path)
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"resume: {folder / STATE_FILE}: unreadable ({exc})") from exc
    weights = load_file(str(folder / "adapter_model.safetensors"), device="cpu")
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora_" in k]
    if missing:
        raise UserError(f"resume: {folder}: adapter does not match this model/config ({missing[0]} ...)")
    device = next(model.parameters()).device
    if optimizer is not None and (folder / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
    if scheduler is not None and (folder / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
    state["path"] = str(folder)
    return state


def _fsync_dir(path: Path) -> None:
    """Make the folder's entries durable before the rename publishes them (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
