"""Typed definitions of every lorascope frame: the contract between trainer and UI.

A frame is one msgpack map. Every frame carries the envelope fields of `Frame`
(protocol version, kind, run id, sequence number, step, wall time); the rest of
the map is the kind's payload, flat beside the envelope. See SPEC.md.

Evolution rules (msgspec's schema-evolution doc): new fields get defaults and are
appended; a field is never retyped or reordered; a deprecated field stays, with a
docstring saying so. A reader skips unknown kinds and unknown fields.
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
PROTOCOL_VERSION = (PROTOCOL_MAJOR, PROTOCOL_MINOR)


# --------------------------------------------------------------------------- arrays
@dataclass
class F32Array:
    """A float32 tensor on the wire: shape plus raw little-endian bytes, never a list of floats.

    Encoded as the map {"dtype": "<f4", "shape": [..], "data": bin}. NaN marks a
    missing cell (e.g. a module that is not adapted in some layer).
    """

    shape: tuple[int, ...]
    data: bytes

    @classmethod
    def from_values(cls, values, shape: tuple[int, ...] | None = None) -> "F32Array":
        """Build from a flat or nested sequence of numbers (or anything with .tolist())."""
        if hasattr(values, "tolist"):
            if shape is None and hasattr(values, "shape"):
                shape = tuple(int(s) for s in values.shape)
            values = values.tolist()
        flat: list[float] = []
        inferred = _flatten(values, flat)
        shape = tuple(shape) if shape is not None else inferred
        buf = array.array("f", flat)
        if sys.byteorder == "big":
            buf.byteswap()
        return cls(shape=shape, data=buf.tobytes())

    def values(self) -> list[float]:
        """The cells as a flat Python list, row-major."""
        buf = array.array("f")
        buf.frombytes(self.data)
        if sys.byteorder == "big":
            buf.byteswap()
        return buf.tolist()

    def rows(self) -> list[list[float]]:
        """A 2-D array as a list of rows (a 1-D array is one row)."""
        flat = self.values()
        if len(self.shape) < 2:
            return [flat]
        width = self.shape[-1]
        return [flat[i : i + width] for i in range(0, len(flat), width)]

    def to_wire(self) -> dict[str, Any]:
        return {"dtype": "<f4", "shape": list(self.shape), "data": self.data}

    @classmethod
    def from_wire(cls, obj: Any) -> "F32Array":
        if not isinstance(obj, dict) or obj.get("dtype") != "<f4":
            raise ValueError(f"expected a <f4 array map, got {type(obj).__name__}")
        shape = tuple(int(s) for s in obj["shape"])
        data = bytes(obj["data"])
        n = 1
        for s in shape:
            n *= s
        if len(data) != 4 * n:
            raise ValueError(f"array of shape {shape} needs {4 * n} bytes, got {len(data)}")
        return cls(shape=shape, data=data)


def _flatten(values, out: list[float]) -> tuple[int, ...]:
    if isinstance(values, (list, tuple)):
        if not values:
            return (0,)
        inner = None
        for v in values:
            inner = _flatten(v, out)
        return (len(values),) + (inner if isinstance(values[0], (list, tuple)) else ())
    out.append(float(values))
    return ()


# --------------------------------------------------------------------------- envelope
@dataclass
class Frame:
    """Envelope common to every frame. `seq` is monotonic per run with no gaps."""

    kind: ClassVar[str] = ""
    run_id: str = ""
    seq: int = -1
    step: int = 0
    wall_time: float = 0.0


# --------------------------------------------------------------------------- run start
@dataclass
class ProbeInfo:
    """A probe prompt as tokenized by the trainer, so a client needs no tokenizer."""

    probe_id: str
    text: str
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # decoded per token; see SPEC on partial UTF-8
    token_bytes: list[bytes] = field(default_factory=list)  # exact bytes of each token


@dataclass
class AnchorInfo:
    """A tracked anchor token whose probability is reported at every probe position."""

    token_id: int
    token: str
    token_bytes: bytes = b""


@dataclass
class ResourceEstimate:
    """Bytes, estimated from the model config before loading."""

    weights: int = 0
    adapter: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    total: int = 0


@dataclass
class RunStart(Frame):
    """First frame of a run: everything a client needs to label the rest."""

    kind: ClassVar[str] = "run_start"
    model: str = ""  # name or path the user gave (or "embedded:SmolLM2-135M-Instruct")
    model_info: dict[str, Any] = field(default_factory=dict)  # model_type, n_params, vocab_size, dtype ...
    adapter: dict[str, Any] = field(default_factory=dict)  # r, alpha, dropout, rslora, scaling, target_modules
    layers: list[str] = field(default_factory=list)  # row labels of the weight-delta heatmap
    modules: list[str] = field(default_factory=list)  # column labels (q_proj, k_proj, ...)
    probes: list[ProbeInfo] = field(default_factory=list)
    anchors: list[AnchorInfo] = field(default_factory=list)
    dataset: dict[str, Any] = field(default_factory=dict)  # path, format, n_examples, n_truncated, tokens
    device: str = "cpu"
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # the resolved training config
    estimate: ResourceEstimate = field(default_factory=ResourceEstimate)
    total_steps: int = 0
    cadences: dict[str, int] = field(default_factory=dict)  # observer name -> every N steps


# --------------------------------------------------------------------------- per step
@dataclass
class StepMetrics(Frame):
    """One optimizer step."""

    kind: ClassVar[str] = "step"
    loss: float = 0.0
    lr: float = 0.0
    grad_norm: float = 0.0
    tokens: int = 0  # tokens trained on in this step (after truncation, loss-bearing)
    tokens_per_s: float = 0.0
    step_time: float = 0.0  # seconds for this step
    epoch: float = 0.0
    aux_loss: float = 0.0  # manual-edit constraint loss added this step


@dataclass
class WeightDeltas(Frame):
    """‖ΔW‖_F per layer × module. Arrays have shape [len(layers), len(modules)]; NaN = not adapted."""

    kind: ClassVar[str] = "weight_delta"
    absolute: F32Array = field(default_factory=lambda: F32Array((0, 0), b""))  # ‖s·B·A‖_F
    relative: F32Array = field(default_factory=lambda: F32Array((0, 0), b""))  # ‖s·B·A‖_F / ‖W₀‖_F
    since_last: F32Array = field(default_factory=lambda: F32Array((0, 0), b""))  # ‖s·(B₁A₁ − B₀A₀)‖_F
    since_step: int = 0  # step of the previous weight-delta frame


@dataclass
class TokenProb:
    """One token's probability under the base and the tuned model."""

    token_id: int
    token: str
    p_base: float
    p_tuned: float
    token_bytes: bytes = b""


@dataclass
class PositionShift:
    """Next-token distribution shift at one probe position (position i predicts token i+1)."""

    position: int
    kl: float  # KL(base ‖ tuned), nats
    entropy_base: float
    entropy_tuned: float
    top: list[TokenProb] = field(default_factory=list)  # union of base and tuned top-k
    anchors: list[TokenProb] = field(default_factory=list)


@dataclass
class ProbeShift:
    probe_id: str
    positions: list[PositionShift] = field(default_factory=list)
    mean_kl: float = 0.0


@dataclass
class LogitShifts(Frame):
    """Base vs tuned next-token distributions on every probe."""

    kind: ClassVar[str] = "logit_shift"
    probes: list[ProbeShift] = field(default_factory=list)
    top_k: int = 5


@dataclass
class Spike:
    """An example whose loss or gradient norm jumped above the rolling baseline."""

    example_id: int
    loss: float
    grad_norm: float
    score: float  # how many baseline deviations above the baseline
    tokens: int
    snippet: str


@dataclass
class Volatility(Frame):
    """Per-example figures of one optimizer step (all micro-batches, all ranks)."""

    kind: ClassVar[str] = "volatility"
    example_ids: list[int] = field(default_factory=list)
    losses: F32Array = field(default_factory=lambda: F32Array((0,), b""))
    grad_norms: F32Array = field(default_factory=lambda: F32Array((0,), b""))
    token_counts: list[int] = field(default_factory=list)
    dispersion: float = 0.0  # coefficient of variation of the per-example grad norms
    baseline: float = 0.0  # rolling mean of dispersion
    spikes: list[Spike] = field(default_factory=list)
    sensitivity: F32Array | None = None  # per-example loss after minus before the step, if on
    snippets: list[str] = field(default_factory=list)  # per example, in example_ids order: its text's start


@dataclass
class Resources(Frame):
    """Measured memory, next to the estimate from run start."""

    kind: ClassVar[str] = "resources"
    peak_bytes: int = 0  # CUDA max_memory_allocated, or process peak RSS on CPU
    current_bytes: int = 0
    source: str = "rss"  # "cuda" or "rss"
    estimate_total: int = 0


# --------------------------------------------------------------------------- edits
EDIT_STATES = ("requested", "active", "achieved", "failed", "cancelled")


@dataclass
class EditUpdate(Frame):
    """Lifecycle of one manual logit edit, sent on every change and every step while active."""

    kind: ClassVar[str] = "edit"
    edit_id: str = ""
    state: str = "requested"  # one of EDIT_STATES
    probe_id: str = ""
    position: int = 0
    token_id: int = 0
    token: str = ""
    target_p: float = 0.0  # q
    weight: float = 1.0  # λ
    tolerance: float = 0.0  # KL below which the edit is achieved
    budget: int = 0  # step budget
    steps_used: int = 0
    start_step: int = 0
    p_token: float = 0.0  # the token's current probability at that position
    p_token_start: float = 0.0
    kl_to_target: float = 0.0  # KL(p' ‖ p_model)
    collateral: dict[str, float] = field(default_factory=dict)  # other probe -> change in mean KL since start
    message: str = ""


# --------------------------------------------------------------------------- lifecycle
RUN_STATES = ("starting", "running", "paused", "finished", "failed", "stopped")


@dataclass
class Status(Frame):
    """The trainer's state changed."""

    kind: ClassVar[str] = "status"
    state: str = "running"  # one of RUN_STATES
    message: str = ""


@dataclass
class Heartbeat(Frame):
    """Sent about once a second when nothing else is; any frame counts as a heartbeat."""

    kind: ClassVar[str] = "heartbeat"
    state: str = "running"
    last_seq: int = -1  # seq of the last non-heartbeat frame


@dataclass
class Checkpoint(Frame):
    """An adapter checkpoint was written (atomically)."""

    kind: ClassVar[str] = "checkpoint"
    path: str = ""
    reason: str = "periodic"  # periodic, save, stop, interrupt, end


@dataclass
class Continuation(Frame):
    """Greedy continuation of a probe from the base and the tuned model (asked for from the UI)."""

    kind: ClassVar[str] = "continuation"
    probe_id: str = ""
    base_text: str = ""
    tuned_text: str = ""
    max_new_tokens: int = 0


@dataclass
class RunEnd(Frame):
    """Last frame of a run."""

    kind: ClassVar[str] = "run_end"
    reason: str = "finished"  # finished, stopped, interrupted, failed
    final_loss: float = 0.0
    steps: int = 0
    adapter_path: str = ""
    message: str = ""


FRAME_TYPES: dict[str, type[Frame]] = {
    cls.kind: cls
    for cls in (
        RunStart,
        StepMetrics,
        WeightDeltas,
        LogitShifts,
        Volatility,
        Resources,
        EditUpdate,
        Status,
        Heartbeat,
        Checkpoint,
        Continuation,
        RunEnd,
    )
}
