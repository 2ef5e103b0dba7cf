"""The training configuration: one typed dataclass, validated where it is made.

Every option of `lorascope train` is a field here (the CLI is generated from the
fields' metadata, so the two cannot drift). A bad value is a UserError naming the
field and the rule. `resolved()` is what RunStart.hyperparameters carries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorascope.protocol.endpoints import DEFAULT_CONTROL, DEFAULT_PUB
from lorascope.protocol.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")
DEVICES = ("auto", "cpu", "cuda")


def option(default, help: str, **extra):
    """A field with its CLI help text (and optional flags for the argument parser)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    # -- model and data
    model: str | None = option(None, "model: a local HF directory, a .gguf file, a cached hub name; default the embedded SmolLM2-135M-Instruct")
    dataset: str | None = option(None, "training file (.txt, .jsonl, .json: plain, alpaca or chat); default the embedded sample")
    chat_template: bool = option(True, "render alpaca/chat records with the tokenizer's chat template (loss on answers only)")
    max_length: int = option(128, "tokens per example; longer ones are truncated and counted")
    heldout: int = option(3, "examples kept out of training at the end of the file (their texts become default probes)")
    shuffle: bool = option(True, "shuffle the examples every epoch (seeded)")
    order: str | None = option(None, "curriculum order file (from `lorascope rank`): train in that order, no shuffle")
    # -- adapter
    rank: int = option(8, "LoRA rank r")
    alpha: float = option(16.0, "LoRA alpha (scaling alpha/r, or alpha/sqrt(r) with --rslora)")
    dropout: float = option(0.05, "LoRA dropout")
    target_modules: list[str] = option([], "module names to adapt; default every attention and MLP projection", nargs="+")
    rslora: bool = option(False, "rank-stabilised LoRA scaling alpha/sqrt(r)")
    # -- optimisation
    lr: float = option(3e-4, "peak learning rate (AdamW)")
    schedule: str = option("cosine", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup_steps: int = option(5, "linear warm-up steps")
    weight_decay: float = option(0.0, "AdamW weight decay")
    max_grad_norm: float = option(1.0, "gradient clipping norm (0 = off)")
    batch_size: int = option(4, "examples per micro-batch")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    epochs: float = option(1.0, "passes over the data (ignored when --max-steps is given)")
    max_steps: int = option(0, "optimizer steps to run (0 = from --epochs)")
    seed: int = option(0, "random seed (data order, adapter init, dropout)")
    device: str = option("auto", "auto (CUDA when present), cpu or cuda", choices=DEVICES)
    # -- observers
    probes: str | None = option(None, "probe prompts and anchors file (JSON/JSONL); default the packaged probes + held-out examples")
    anchors: list[str] = option([], "extra anchor tokens to track at every probe position", nargs="+")
    weight_delta_every: int = option(5, "weight-delta frame every N steps (0 = off)")
    logit_shift_every: int = option(5, "logit-shift frame every N steps (0 = off)")
    volatility_every: int = option(1, "volatility frame every N steps (0 = off)")
    resources_every: int = option(10, "resources frame every N steps (0 = off)")
    top_k: int = option(5, "top-k tokens per probe position in logit-shift frames")
    spike_score: float = option(3.0, "volatility spike threshold in baseline deviations")
    loss_sensitivity: bool = option(False, "volatility also reports each example's loss after minus before the step (one more forward)")
    # -- transport
    pub: str = option(DEFAULT_PUB, "publish frames on this endpoint (port 0 = any free port)")
    control: str = option(DEFAULT_CONTROL, "control endpoint (port 0 = any free port)")
    curve_dir: str | None = option(None, "CurveZMQ key folder (required to bind beyond loopback)")
    insecure: bool = option(False, "bind beyond loopback WITHOUT keys: anyone who can reach it can pause or edit the run")
    # -- output
    output_dir: str = option("runs", "runs are written under OUTPUT_DIR/RUN_ID/")
    run_id: str | None = option(None, "run id (default: a timestamp)")
    checkpoint_every: int = option(50, "save an adapter checkpoint every N steps (0 = only at the end)")
    resume: str | None = option(None, "resume from a run directory or a checkpoint directory")
    edits: str | None = option(None, "scripted manual logit edits file, applied at the steps it names")
    progress: bool = option(True, "progress line on stderr")

    def __post_init__(self):
        _positive(self, "rank", "max_length", "batch_size", "grad_accum")
        _non_negative(self, "heldout", "warmup_steps", "max_steps", "checkpoint_every", "weight_delta_every",
                      "logit_shift_every", "volatility_every", "resources_every", "weight_decay", "max_grad_norm")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"dropout: must be in [0, 1), got {self.dropout}")
        if self.alpha <= 0:
            raise UserError(f"alpha: must be > 0, got {self.alpha}")
        if not 0.0 < self.lr < 1.0:
            raise UserError(f"lr: must be in (0, 1), got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule: must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.device not in DEVICES:
            raise UserError(f"device: must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.max_steps == 0 and self.epochs <= 0:
            raise UserError(f"epochs: must be > 0 when max_steps is 0, got {self.epochs}")
        if not 1 <= self.top_k <= 100:
            raise UserError(f"top_k: must be in 1..100, got {self.top_k}")
        if self.spike_score <= 0:
            raise UserError(f"spike_score: must be > 0, got {self.spike_score}")
        for name in ("dataset", "probes", "order", "edits"):
            value = getattr(self, name)
            if value is not None and not Path(value).expanduser().is_file():
                raise UserError(f"{name}: file not found: {value}")
        if self.resume is not None and not Path(self.resume).expanduser().is_dir():
            raise UserError(f"resume: not a directory: {self.resume}")
        if self.run_id is not None and (not self.run_id or "/" in self.run_id or self.run_id.startswith(".")):
            raise UserError(f"run_id: must be a plain folder name, got {self.run_id!r}")
        self.target_modules = list(self.target_modules or [])
        self.anchors = list(self.anchors or [])

    @property
    def scaling(self) -> float:
        return self.alpha / (self.rank ** 0.5) if self.rslora else self.alpha / self.rank

    def cadences(self) -> dict[str, int]:
        return {
            "weight_delta": self.weight_delta_every,
            "logit_shift": self.logit_shift_every,
            "volatility": self.volatility_every,
            "resources": self.resources_every,
            "checkpoint": self.checkpoint_every,
        }

    def resolved(self, **filled: Any) -> dict[str, Any]:
        """Every field (with the defaults filled in by the trainer, e.g. target modules) as plain JSON values."""
        values = dataclasses.asdict(self)
        values.update(filled)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"config: unknown option(s) {', '.join(unknown)}")
        return cls(**values)


def _positive(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or value <= 0:
            raise UserError(f"{name}: must be > 0, got {value!r}")


def _non_negative(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, (int, float)) or value < 0:
            raise UserError(f"{name}: must be >= 0, got {value!r}")
