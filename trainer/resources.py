"""Will it fit? Memory estimate from the config before loading, and the measured peak during the run.

The estimate builds the model on PyTorch's meta device (no memory, no weights) to
count parameters and the adapter exactly, then adds gradients and AdamW state for
the adapter only (the base is frozen) and activations for batch × length from the
per-layer formula of Korthikanti et al. 2022 ("Reducing Activation Recomputation"),
s·b·h·(34 + 5·a·s/h) bytes at 16 bits, scaled to the training dtype, plus the
logits (b·s·V, kept about three times: logits, log-softmax, their gradient) and what each
adapted Linear keeps for its backward (its dropped-out input and the rank-r middle). Process RSS
also holds the Python runtime and allocator slack, which no formula here counts.
Also the `lorascope estimate` subcommand.
"""

from __future__ import annotations

import resource
import sys

from lorascope.protocol.frames import ResourceEstimate, Resources

LOGIT_COPIES = 3


def estimate_resources(model_config, *, rank: int, batch_size: int, max_length: int,
                       target_modules: list[str] | None = None, dtype_bytes: int = 4) -> ResourceEstimate:
    """Bytes for weights, adapter, gradients, optimizer state and activations (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    from .models import find_target_modules

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())  # tied weights once
    targets = set(target_modules or find_target_modules(model))
    adapter_params = 0
    lora_saved_per_token = 0  # bytes the adapters keep for backward, per token (see below)
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in targets and hasattr(module, "in_features"):
            adapter_params += rank * (module.in_features + module.out_features)
            # each adapted Linear saves its dropped-out input (float32 + a byte mask) and its rank-r middle
            lora_saved_per_token += module.in_features * 5 + rank * 4
    cfg = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    hidden = int(getattr(cfg, "hidden_size", 0) or getattr(cfg, "n_embd", 0))
    layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0))
    heads = int(getattr(cfg, "num_attention_heads", 0) or getattr(cfg, "n_head", 1))
    vocab = int(getattr(cfg, "vocab_size", 0))
    s, b = max_length, batch_size
    per_layer_16bit = s * b * hidden * (34 + 5 * heads * s / max(hidden, 1))
    activations = int(layers * per_layer_16bit * dtype_bytes / 2 + LOGIT_COPIES * b * s * vocab * 4
                      + lora_saved_per_token * b * s)
    weights = n_params * dtype_bytes
    adapter = adapter_params * 4  # adapters train in float32
    gradients = adapter_params * 4
    optimizer = adapter_params * 4 * 2  # AdamW: exp_avg and exp_avg_sq
    total = weights + adapter + gradients + optimizer + activations
    return ResourceEstimate(weights=weights, adapter=adapter, gradients=gradients, optimizer=optimizer,
                            activations=activations, total=total)


class ResourceObserver:
    """Measured memory every `every` steps: CUDA allocator peak on a GPU, else the process's peak RSS."""

    def __init__(self, device, every: int = 10, estimate_total: int = 0):
        self.every = every
        self.estimate_total = estimate_total
        self.cuda = str(device).startswith("cuda")

    def observe(self, step: int, force: bool = False) -> Resources | None:
        if not force and step % self.every != 0:
            return None
        if self.cuda:
            import torch

            peak, current, source = torch.cuda.max_memory_allocated(), torch.cuda.memory_allocated(), "cuda"
        else:
            peak, current, source = peak_rss_bytes(), current_rss_bytes(), "rss"
        return Resources(step=step, peak_bytes=peak, current_bytes=current, source=source,
                         estimate_total=self.estimate_total)


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


# --------------------------------------------------------------------------- `lorascope estimate`
def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="model directory, .gguf or cached name (default: the embedded model)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--target-modules", nargs="+", default=None)
    parser.add_argument("--dtype-bytes", type=int, default=4, choices=(2, 4), help="bytes per base weight (4 = float32)")


def run(args) -> int:
    from lorascope.protocol.errors import UserError

    from .models import load_model_config

    for name in ("batch_size", "max_length", "rank"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')}: must be > 0, got {getattr(args, name)}")
    config = load_model_config(args.model)
    est = estimate_resources(config, rank=args.rank, batch_size=args.batch_size, max_length=args.max_length,
                             target_modules=args.target_modules, dtype_bytes=args.dtype_bytes)
    print(f"model {args.model or 'embedded:SmolLM2-135M-Instruct'}, rank {args.rank}, "
          f"batch {args.batch_size} x {args.max_length} tokens")
    for label, value in (("weights", est.weights), ("adapter", est.adapter), ("gradients", est.gradients),
                         ("optimizer", est.optimizer), ("activations", est.activations)):
        print(f"  {label:<12}{format_bytes(value):>12}")
    print(f"  {'total':<12}{format_bytes(est.total):>12}")
    return 0


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
