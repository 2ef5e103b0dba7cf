"""The LoRA training loop, top to bottom: config, model, adapter, data, optimizer, observers, stream, loop, end.

Every frame goes through one FrameStream (recording first, then the publisher).
Control requests are answered between optimizer steps (run_control.py). An
observer that fails is switched off with a Status message; training goes on.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from lorascope.protocol.errors import UserError
from lorascope.protocol.frames import Checkpoint, RunEnd, RunStart, Status, StepMetrics

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .datasets import DEFAULT_DATASET, IGNORE, BatchPlan, collate, load_dataset, read_order
from .models import find_target_modules, load_model
from .progress import ProgressLine
from .resources import ResourceObserver, estimate_resources
from .run_control import RunControl


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    reason: str  # finished, stopped, interrupted, failed
    steps: int
    final_loss: float
    adapter_path: str


def train(cfg: TrainConfig, *, progress_stream=None) -> RunResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from peft import LoraConfig, get_peft_model
    from transformers import get_scheduler

    # ------------------------------------------------------------------ process and device
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("device: cuda was asked for, but torch sees no CUDA device")
    # cpu=True also when no GPU is there: that is what makes accelerate form a gloo group under torchrun.
    accelerator = Accelerator(cpu=cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available()))
    is_main = accelerator.is_main_process
    set_seed(cfg.seed)
    run_id = cfg.run_id or _new_run_id(Path(cfg.output_dir))
    run_dir = Path(cfg.output_dir) / run_id
    if (run_dir / "run.lsr").exists():  # before the slow part: never append to another run's recording
        raise UserError(f"run_id: {run_dir} already holds a recording; choose another --run-id")

    # ------------------------------------------------------------------ model and adapter
    model, tokenizer, model_name = load_model(cfg.model, device="cpu")
    targets = cfg.target_modules or find_target_modules(model)
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets,
                      use_rslora=cfg.rslora, task_type="CAUSAL_LM")
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:  # e.g. a target module name the model does not have
        raise UserError(f"target_modules: {exc}") from exc
    model.to(accelerator.device)

    # ------------------------------------------------------------------ data
    data = load_dataset(cfg.dataset or DEFAULT_DATASET, tokenizer, max_length=cfg.max_length,
                        chat_template=cfg.chat_template, heldout=cfg.heldout)
    order = read_order(cfg.order, data) if cfg.order else None
    plan = BatchPlan(data, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, seed=cfg.seed,
                     shuffle=cfg.shuffle and order is None, order=order,
                     world=accelerator.num_processes, rank=accelerator.process_index)
    total_steps = cfg.max_steps or plan.steps_for_epochs(cfg.epochs)

    # ------------------------------------------------------------------ optimizer and schedule
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Not prepared by accelerate: its scheduler wrapper steps once per process.
    scheduler = get_scheduler(cfg.schedule, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    peft_model = accelerator.unwrap_model(model)

    start_step, resumed_from, edits_state = 0, None, None
    if cfg.resume:
        state = load_checkpoint(cfg.resume, peft_model, optimizer=optimizer, scheduler=scheduler)
        start_step, resumed_from, edits_state = int(state["step"]), state["path"], state.get("edits")
        if start_step >= total_steps:
            raise UserError(f"resume: the checkpoint is at step {start_step}, the run has {total_steps} steps "
                            "(raise --max-steps or --epochs)")

    # ------------------------------------------------------------------ observers (built only when on)
    from .edits import EditManager
    from .observers.lora_modules import adapted_linears
    from .observers.logit_shift import LogitShiftObserver
    from .observers.volatility import VolatilityObserver, per_example_loss
    from .observers.weight_delta import WeightDeltaObserver
    from .probes import ProbeSet

    probes = (ProbeSet.from_file(cfg.probes, tokenizer) if cfg.probes
              else ProbeSet.default(tokenizer, [e.text for e in data.heldout]))
    anchors = list(dict.fromkeys(probes.anchors + cfg.anchors))
    _, layers, modules = adapted_linears(peft_model)
    logit_obs = LogitShiftObserver(peft_model, tokenizer, probes, anchors=anchors,
                                   every=cfg.logit_shift_every or 10 ** 9, top_k=cfg.top_k)
    # Only the main process measures and publishes (volatility aside); under several processes the others train.
    observers = {}
    if cfg.weight_delta_every and is_main:
        observers["weight_delta"] = WeightDeltaObserver(peft_model, every=cfg.weight_delta_every)
    if cfg.logit_shift_every and is_main:
        observers["logit_shift"] = logit_obs
    vol = None
    multi = accelerator.num_processes > 1
    if cfg.volatility_every:  # on every rank: per-example figures are gathered from all of them
        gather = (lambda t: accelerator.gather(t.T.contiguous()).T) if multi else None
        vol = VolatilityObserver(peft_model, every=cfg.volatility_every, spike_score=cfg.spike_score,
                                 snippet=data.snippet, gather=gather)
        observers["volatility"] = vol
    estimate = estimate_resources(peft_model.get_base_model().config, rank=cfg.rank, batch_size=cfg.batch_size,
                                  max_length=cfg.max_length, target_modules=targets)
    if cfg.resources_every and is_main:
        observers["resources"] = ResourceObserver(accelerator.device, every=cfg.resources_every,
                                                  estimate_total=estimate.total)
    # Edits add a backward on the main process only, which DDP cannot reconcile: single process only.
    edits = EditManager(peft_model, tokenizer, probes, logit_obs)
    if edits_state:
        edits.load_state_dict(edits_state)
    scripted = _scripted_edits(cfg.edits) if cfg.edits else []

    # ------------------------------------------------------------------ stream, recording, control
    stream, control_server, publisher = _open_stream(cfg, run_id, run_dir, is_main)
    progress = ProgressLine(total_steps, stream=progress_stream, enabled=cfg.progress and is_main)

    def save(step: int, reason: str, name: str | None = None) -> str:
        if not is_main:
            return ""
        state = {"epoch": plan.epoch_at(step), "run_id": run_id, "reason": reason, "edits": edits.state_dict(),
                 "config": cfg.resolved(target_modules=targets)}
        path = save_checkpoint(run_dir, peft_model, step=step, optimizer=optimizer, scheduler=scheduler,
                               state=state, name=name)
        stream.emit(Checkpoint(step=step, path=str(path), reason=reason))
        return str(path)

    control = RunControl(control_server, stream, save=save, edits=None if multi else edits, logit_observer=logit_obs,
                         total_steps=total_steps, progress=progress)
    previous_sigint = _on_interrupt(control)

    stream.emit(RunStart(
        step=start_step, model=model_name,
        model_info={"model_type": getattr(peft_model.config, "model_type", ""), "n_params": n_params,
                    "n_trainable": sum(p.numel() for p in params), "vocab_size": len(tokenizer),
                    "dtype": str(next(peft_model.parameters()).dtype).replace("torch.", "")},
        adapter={"r": cfg.rank, "alpha": cfg.alpha, "dropout": cfg.dropout, "rslora": cfg.rslora,
                 "scaling": cfg.scaling, "target_modules": targets},
        layers=layers, modules=modules, probes=logit_obs.probe_infos(), anchors=logit_obs.anchor_infos(),
        dataset=data.summary(), device=str(accelerator.device),
        hyperparameters=cfg.resolved(target_modules=targets, resumed_from=resumed_from,
                                     world_size=accelerator.num_processes),
        estimate=estimate, total_steps=total_steps, cadences=cfg.cadences(),
    ))
    control.set_state("running", start_step, f"resumed from {resumed_from}" if resumed_from else "")
    if multi and (scripted or cfg.edits):
        stream.emit(Status(step=start_step, state="running", message="scripted edits need a single process: skipped"))
    if "logit_shift" in observers:  # the base picture before any training
        _observe(observers, "logit_shift", start_step, stream, control, force=True)

    # ------------------------------------------------------------------ the loop
    # "interrupted" until the loop ends normally: a second Ctrl-C (KeyboardInterrupt) still saves and ends.
    step, loss_value, reason, message = start_step, float("nan"), "interrupted", ""
    pad_id = tokenizer.pad_token_id
    try:
        while step < total_steps:
            control.between_steps(step)
            if _agree_to_end(accelerator, control.should_end):
                break
            for due in [e for e in scripted if e.get("at_step", 0) <= step and not multi]:
                scripted.remove(due)
                _scripted_edit(edits, due, step, stream, control)

            t0 = time.perf_counter()
            model.train()
            loss_sum = torch.zeros((), device=accelerator.device)
            n_examples = loss_tokens = seen_tokens = 0
            # Loss sensitivity re-runs this step's batches after the update: only on steps volatility reports.
            again = [] if (cfg.loss_sensitivity and vol is not None and (step + 1) % vol.every == 0) else None
            for examples in plan.micro_batches(step):
                batch = collate(examples, pad_id)
                input_ids = batch["input_ids"].to(accelerator.device)
                mask = batch["attention_mask"].to(accelerator.device)
                labels = batch["labels"].to(accelerator.device)
                weight = 1.0 / (len(examples) * cfg.grad_accum)
                with vol.capture(loss_weight=weight) if vol is not None else nullcontext():
                    logits = model(input_ids=input_ids, attention_mask=mask).logits
                    losses, counts = per_example_loss(logits, labels)
                    accelerator.backward(losses.mean() / cfg.grad_accum)
                if vol is not None:
                    vol.record(batch["example_ids"], losses.detach(), counts)
                if again is not None:
                    again.append((batch["example_ids"], input_ids, mask, labels))
                loss_sum += losses.detach().sum()
                n_examples += len(examples)
                loss_tokens += int((batch["labels"][:, 1:] != IGNORE).sum())  # counted on the host copy: no sync
                seen_tokens += int(batch["attention_mask"].sum())
            aux_value = 0.0
            if edits.has_active():  # outside vol.capture: the edit's backward is not the examples'
                aux = edits.aux_loss()
                if aux is not None:
                    accelerator.backward(aux)
                    aux_value = float(aux.detach())
            grad_norm = (accelerator.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm
                         else torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if again:
                with torch.no_grad(), vol.paused():
                    for ids, input_ids, mask, labels in again:
                        after, _ = per_example_loss(model(input_ids=input_ids, attention_mask=mask).logits, labels)
                        vol.record_after(ids, after)
            step += 1
            if multi:  # the loss over every rank's examples
                count = torch.tensor(float(n_examples), device=loss_sum.device)
                totals = accelerator.reduce(torch.stack([loss_sum, count]), "sum")
                loss_sum, n_examples = totals[0], int(totals[1])
            loss_value = float(loss_sum) / max(n_examples, 1)  # the step's one host sync for the loss
            step_time = time.perf_counter() - t0

            stream.emit(StepMetrics(step=step, loss=loss_value, lr=lr, grad_norm=float(grad_norm),
                                    tokens=loss_tokens, tokens_per_s=seen_tokens / step_time, step_time=step_time,
                                    epoch=plan.epoch_at(step), aux_loss=aux_value))
            control.last_loss = loss_value
            if not math.isfinite(loss_value):  # before any checkpoint could keep the broken weights
                raise FloatingPointError(f"loss is {loss_value} at step {step} (try a lower --lr)")
            for name in list(observers):
                _observe(observers, name, step, stream, control)
            if "volatility" not in observers:
                vol = None  # switched off after a failure: stop capturing too
            if edits.has_active() or aux_value:
                for frame in edits.after_step(step):
                    stream.emit(frame)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total_steps:
                save(step, "periodic")
            progress.update(step, loss=loss_value, tokens_per_s=seen_tokens / step_time, state=control.state)
            control.step_done(step)
        reason = "interrupted" if control.interrupted else "stopped" if control.stop_requested else "finished"
    except Exception as exc:
        reason, message = "failed", f"{type(exc).__name__}: {exc}"
        control.set_state("failed", step, message)
        raise
    finally:
        _end_run(reason, message, step, loss_value, save, stream, control, observers, progress,
                 control_server, previous_sigint)
    return RunResult(run_id, run_dir, reason, step, loss_value, str(run_dir / "adapter"))


# --------------------------------------------------------------------------- helpers of the loop
def _observe(observers: dict, name: str, step: int, stream, control: RunControl, force: bool = False) -> None:
    """One observer's frame at its cadence; an observer that raises is switched off, not fatal."""
    try:
        frame = observers[name].observe(step, force=force)
    except Exception as exc:  # noqa: BLE001
        observer = observers.pop(name)
        if hasattr(observer, "close"):
            observer.close()
        stream.emit(Status(step=step, state=control.state,
                           message=f"{name} observer switched off: {type(exc).__name__}: {exc}"))
        return
    if frame is not None:
        stream.emit(frame)


def _agree_to_end(accelerator, mine: bool) -> bool:
    """Under several processes the main one (which has the control socket) decides for all."""
    if accelerator.num_processes == 1:
        return mine
    flag = torch.tensor([1.0 if mine else 0.0], device=accelerator.device)
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def _scripted_edit(edits, args: dict, step: int, stream, control: RunControl) -> None:
    try:
        for frame in edits.request(dict(args), step):
            stream.emit(frame)
    except UserError as exc:
        stream.emit(Status(step=step, state=control.state, message=f"scripted edit refused: {exc}"))


def _scripted_edits(path: str) -> list[dict]:
    """Edits from `--edits FILE`, each with the step to apply it at (the format of `lorascope edit`)."""
    from .edits_cli import load_edits_file

    return [dict(e) for e in load_edits_file(path)]


def _end_run(reason, message, step, loss_value, save, stream, control, observers, progress, server, previous_sigint):
    adapter_path = ""
    try:
        adapter_path = save(step, {"finished": "end", "interrupted": "interrupt", "stopped": "stop"}.get(reason, reason),
                            name="adapter")
    except Exception as exc:  # noqa: BLE001 - still close the recording properly
        message = message or f"final save failed: {exc}"
    state = {"finished": "finished", "failed": "failed"}.get(reason, "stopped")
    control.set_state(state, step, message or reason)
    stream.emit(RunEnd(step=step, reason=reason, final_loss=loss_value, steps=step, adapter_path=adapter_path,
                       message=message))
    progress.close()
    for observer in observers.values():
        if hasattr(observer, "close"):
            observer.close()
    if server is not None:
        server.close()
    stream.close()
    if previous_sigint is not None:
        signal.signal(signal.SIGINT, previous_sigint)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _open_stream(cfg: TrainConfig, run_id: str, run_dir: Path, is_main: bool):
    """(stream, control server, publisher); only the main process records and publishes."""
    from lorascope.protocol.control import ControlServer
    from lorascope.protocol.endpoints import normalize_bind
    from lorascope.protocol.publisher import Publisher
    from lorascope.protocol.recording import RunRecorder
    from lorascope.protocol.stream import FrameStream, NullSink

    if not is_main:
        return FrameStream(run_id, sinks=[NullSink()]), None, None
    fresh = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    opened = []
    try:
        recorder = RunRecorder(run_dir / "run.lsr")
        opened.append(recorder)
        publisher = Publisher(normalize_bind(cfg.pub), curve_dir=cfg.curve_dir, insecure=cfg.insecure)
        opened.append(publisher)
        server = ControlServer(normalize_bind(cfg.control), recording=recorder.path, run_id=run_id,
                               pub_endpoint=publisher.endpoint, curve_dir=cfg.curve_dir, insecure=cfg.insecure,
                               extra_commands=("status",))
    except BaseException:
        for thing in reversed(opened):
            thing.close()
        if fresh:  # a busy port must not leave an empty run folder behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    endpoints = {"pub": publisher.endpoint, "control": server.endpoint, "run_id": run_id,
                 "recording": str(recorder.path)}
    tmp = run_dir / ".endpoints.json.tmp"
    tmp.write_text(json.dumps(endpoints, indent=1), encoding="utf-8")
    tmp.replace(run_dir / "endpoints.json")
    return FrameStream(run_id, sinks=[recorder, publisher]), server, publisher


def _on_interrupt(control: RunControl):
    """Ctrl-C / SIGTERM: finish the current step, save, end cleanly. A second one stops at once."""
    def handler(signum, _frame):
        if control.interrupted:
            raise KeyboardInterrupt
        control.interrupted = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        return previous
    except ValueError:  # not the main thread (embedded use): no signal handling
        return None


def _new_run_id(output_dir: Path) -> str:
    base = time.strftime("%Y%m%d-%H%M%S")
    run_id, n = base, 1
    while (output_dir / run_id).exists():
        n += 1
        run_id = f"{base}-{n}"
    return run_id
