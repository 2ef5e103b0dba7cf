"""`lorascope rank DATASET`: score every example at the base model and write a curriculum order.

Each example is scored by what the volatility observer measures during training
— its loss, and the norm of its own gradient over the LoRA parameters — at the
base model (adapter freshly initialised: B = 0, A random with `--seed`), in
batches, from one backward per batch and no optimizer step. Examples the model
already "knows" come first (low score), the ones that would jolt it last.

The order file is plain text, one example per line, lowest score first:

    # lorascope rank: DATASET, by grad_norm (low to high); columns: example_id loss grad_norm tokens
    17 0.8123 0.4410 23
    ...

`lorascope train --order FILE` reads the first column (lines starting with '#'
are comments). `--reordered FILE` also writes the dataset's records in that order
(same format as the input), for tools that take no order file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from lorascope.protocol.errors import UserError

SCORES = ("grad_norm", "loss")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", nargs="?", default=None,
                        help="training file (.txt, .jsonl, .json); default the embedded sample")
    parser.add_argument("--model", default=None, help="model directory, .gguf or cached hub name; default the embedded SmolLM2")
    parser.add_argument("--out", default=None, help="order file to write (default: DATASET_STEM.order.txt here)")
    parser.add_argument("--by", choices=SCORES, default="grad_norm",
                        help="score to sort by, low to high (default: grad_norm, the per-example gradient norm; "
                             "loss needs no backward and takes about a third of the time)")
    parser.add_argument("--reordered", default=None, help="also write the dataset's records in the ranked order to this file")
    parser.add_argument("--batch-size", type=int, default=4, help="examples per scoring batch (default: 4)")
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example, as in training (default: 128)")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r of the adapter scored (default: 8)")
    parser.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default: 16)")
    parser.add_argument("--target-modules", nargs="+", default=None, help="modules to adapt; default all attention and MLP projections")
    parser.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=True,
                        help="render alpaca/chat records with the chat template, as `train` does (default: on)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the adapter's random A (default: 0)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA when present")
    parser.add_argument("--quiet", action="store_true", help="no progress line")


def run(args) -> int:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_length < 2:
        raise UserError(f"--max-length must be >= 2, got {args.max_length}")
    if args.rank < 1:
        raise UserError(f"--rank must be >= 1, got {args.rank}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from .datasets import DEFAULT_DATASET, load_dataset
    from .models import find_target_modules, load_model

    dataset = Path(args.dataset) if args.dataset else DEFAULT_DATASET
    out = Path(args.out) if args.out else Path(dataset.name.split(".")[0] + ".order.txt")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device")

    model, tokenizer, model_name = load_model(args.model, device=device)
    data = load_dataset(dataset, tokenizer, max_length=args.max_length, chat_template=args.chat_template, heldout=0)
    t0 = time.perf_counter()
    scores = score_examples(model, tokenizer, data, rank=args.rank, alpha=args.alpha, seed=args.seed,
                            target_modules=args.target_modules or find_target_modules(model),
                            batch_size=args.batch_size, device=device,
                            progress=None if args.quiet else sys.stderr, grad_norms=args.by == "grad_norm")
    elapsed = time.perf_counter() - t0
    ordered = rank_order(scores, by=args.by)
    write_order(out, ordered, header=f"lorascope rank: {dataset}, model {model_name}, by {args.by} (low to high)")
    if args.reordered:
        write_reordered(dataset, data, [row["example_id"] for row in ordered], Path(args.reordered))
    _print_summary(ordered, data, args.by, out, elapsed)
    return 0


def score_examples(model, tokenizer, data, *, rank: int = 8, alpha: float = 16.0, seed: int = 0,
                   target_modules: list[str], batch_size: int = 4, device: str = "cpu", progress=None,
                   grad_norms: bool = True) -> list[dict]:
    """Per example {example_id, loss, grad_norm, tokens} at the base model, via the volatility observer's hooks.

    Examples are batched by length (less padding; results are per example, so the
    batching does not change them). Without `grad_norms` there is no backward at all
    and grad_norm is NaN: about a third of the cost.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from .datasets import collate
    from .observers.volatility import VolatilityObserver, per_example_loss

    torch.manual_seed(seed)
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=target_modules, task_type="CAUSAL_LM")
    try:
        peft_model = get_peft_model(model, lora)
    except ValueError as exc:
        raise UserError(f"--target-modules: {exc}") from exc
    peft_model.to(device)
    peft_model.eval()  # no dropout anywhere: a score must not depend on a coin flip
    observer = VolatilityObserver(peft_model, every=1)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    examples = sorted(data.examples, key=lambda e: len(e.input_ids))
    rows: list[dict] = []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            batch = collate(chunk, pad_id)
            with observer.capture(loss_weight=1.0 / len(chunk)), torch.set_grad_enabled(grad_norms):
                logits = peft_model(input_ids=batch["input_ids"].to(device),
                                    attention_mask=batch["attention_mask"].to(device)).logits
                losses, counts = per_example_loss(logits, batch["labels"].to(device))
                if grad_norms:
                    losses.mean().backward()
            observer.record(batch["example_ids"], losses.detach(), counts)
            peft_model.zero_grad(set_to_none=True)
            frame = observer.observe(start // batch_size, force=True)
            for example_id, loss, norm, tokens in zip(frame.example_ids, frame.losses.values(),
                                                      frame.grad_norms.values(), frame.token_counts):
                rows.append({"example_id": example_id, "loss": loss, "grad_norm": norm, "tokens": tokens})
            if progress is not None:
                print(f"\rrank: {len(rows)}/{len(examples)} examples scored", end="", file=progress, flush=True)
    finally:
        observer.close()
    if progress is not None:
        print(file=progress)
    return rows


def rank_order(scores: list[dict], by: str = "grad_norm") -> list[dict]:
    """Lowest score first; a score that is not finite goes last; ties keep the file order."""
    def key(row):
        value = row[by]
        return (not math.isfinite(value), value if math.isfinite(value) else 0.0, row["example_id"])

    return sorted(scores, key=key)  # ties and all-NaN columns: by example id


def write_order(path: Path, ordered: list[dict], header: str) -> None:
    """The order file `train --order` reads: example id first on each line, '#' comments."""
    lines = [f"# {header}", "# columns: example_id loss grad_norm tokens"]
    lines += [f"{r['example_id']} {r['loss']:.6g} {r['grad_norm']:.6g} {r['tokens']}" for r in ordered]
    _write_atomically(path, "\n".join(lines) + "\n")


def write_reordered(dataset: Path, data, order: list[int], path: Path) -> None:
    """The dataset's own records (lines, or paragraphs of a .txt) in the ranked order."""
    from .datasets import read_records

    fmt, rows = read_records(dataset)
    if dataset.suffix == ".txt":
        records = [r["text"] for _, r in rows]
        text = "\n\n".join(records[i] for i in order) + "\n"
    elif dataset.suffix == ".json":
        import json

        text = json.dumps([rows[i][1] for i in order], ensure_ascii=False, indent=1) + "\n"
    else:
        raw_lines = dataset.read_text(encoding="utf-8").splitlines()
        text = "\n".join(raw_lines[rows[i][0] - 1] for i in order) + "\n"
    _write_atomically(path, text)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _print_summary(ordered: list[dict], data, by: str, out: Path, elapsed: float) -> None:
    print(f"ranked {len(ordered)} examples by {by} in {elapsed:.1f} s -> {out}")
    if not ordered:
        return
    for title, rows in (("lowest", ordered[:3]), ("highest", ordered[-3:][::-1])):
        print(f"{title}:")
        for r in rows:
            print(f"  #{r['example_id']:<5} loss {r['loss']:.3f}  grad {r['grad_norm']:.3g}  {data.snippet(r['example_id'], 70)}")
