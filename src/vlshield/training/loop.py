"""The one training loop: every defense (and the undefended baseline) runs through ``train``.

Accelerate handles devices and processes (the same code runs under ``accelerate launch``);
AdamW with linear warm-up and cosine decay; gradient accumulation; safetensors checkpoints every
N steps; ``resume`` continues a killed run to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vlshield.config import ConfigError, to_dict
from vlshield.defenses import build_defense
from vlshield.defenses.base import Batch, DefenseContext
from vlshield.models import build_model
from vlshield.poisoning import read_dataset_config
from vlshield.storage import atomic_write_json, run_info, source_sha256
from vlshield.training.config import RunConfig
from vlshield.training.data import LoadedSplit, epoch_batches, load_split, require_dataset_dir
from vlshield.training.forward import forward_views

STATE_FILE = "trainer_state.json"


def cosine_schedule(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    repair_steps: int = 0,
    repair_peak: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the peak learning rate, cosine decay to 0 at ``total_steps``; then a
    defense's repair steps, cosine again from ``repair_peak`` times the peak down to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if step >= total_steps:
            progress = (step - total_steps) / max(1, repair_steps)
            return repair_peak * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_resume(run_dir: Path, config: RunConfig) -> None:
    """A resumed run must have been started with exactly this config, by the same code; name the first
    key that differs."""
    saved_path = run_dir / "config.json"
    if not saved_path.is_file():
        raise ConfigError(f"--resume: {run_dir} has no config.json; nothing to resume")
    record = json.loads(saved_path.read_text())
    saved = record["run"]
    if record.get("source_sha256") not in (None, source_sha256()):
        raise ConfigError(
            f"--resume: {run_dir} was started by other vlshield code (revision {record.get('git_revision')}, "
            "source changed since); resuming would mix two versions of the code; use a new --out"
        )
    current = json.loads(json.dumps(to_dict(config)))
    differences = _differences(saved, current)
    if differences:
        raise ConfigError(
            f"--resume: {run_dir} was started with a different config ({differences[0]}); use a new --out"
        )


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(saved) | set(current)):
            found += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == current else [f"{prefix.rstrip('.')}: {saved!r} then, {current!r} now"]


def _latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"), key=lambda path: int(path.name.split("-")[1]))
    return checkpoints[-1] if checkpoints else None


@contextlib.contextmanager
def _quiet_about_tied_weights():
    """Drop accelerate's warning that a tied weight was stored once, given at every checkpoint of blip2.

    blip2's output layer is its input embedding; resuming restores the tie, bit for bit
    (``tests/training/test_loop.py::test_killed_run_resumes_to_the_same_weights``).
    """
    logger = logging.getLogger("accelerate.utils.other")

    def quiet(record: logging.LogRecord) -> bool:
        return "Removed shared tensor" not in record.getMessage()

    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _save_checkpoint(accelerator, run_dir: Path, step: int, defense, log: list[dict], keep: int = 1) -> None:
    """Save model, optimizer, scheduler and RNG states (safetensors) plus the loop's own state, atomically."""
    accelerator.wait_for_everyone()
    final = run_dir / "checkpoints" / f"step-{step:07d}"
    tmp = run_dir / "checkpoints" / f".tmp-step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    with _quiet_about_tied_weights():
        accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        torch.save(defense.state_dict(), tmp / "defense_state.pt")
        atomic_write_json(tmp / STATE_FILE, {"step": step, "log": log})
        # A run that ends with the schedule at a checkpoint step saves that step again (the defense
        # has decided since): the new checkpoint replaces the old, which a directory rename cannot do.
        stale = final.with_name(f".stale-step-{step:07d}")
        if final.exists():
            final.rename(stale)
        tmp.rename(final)
        shutil.rmtree(stale, ignore_errors=True)
        for old in sorted((run_dir / "checkpoints").glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def prepare_run(
    config: RunConfig, run_dir: str | Path, resume: bool = False
) -> tuple[Path, LoadedSplit, dict[str, Any]]:
    """Check inputs before anything is written: the data directory, the run directory, a resumed config."""
    run_dir = Path(run_dir)
    data_dir = require_dataset_dir(config.data)
    dataset_config = read_dataset_config(data_dir)
    if resume:
        _check_resume(run_dir, config)
    elif (run_dir / "config.json").exists():
        raise ConfigError(f"--out: {run_dir} already holds a run (pass --resume to continue it, or choose another)")
    return run_dir, load_split(data_dir / "train.jsonl"), dataset_config


def _check_image_size(bundle, train: LoadedSplit, spec: str, data: str) -> None:
    size = train.images.shape[-1]
    if bundle.image_size != size:
        raise ConfigError(
            f"model {spec} takes {bundle.image_size} px images but {data} has {size} px images; "
            f"poison with --image-size {bundle.image_size}"
        )


def train(config: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.data`` with ``config.defense``; write the run directory.

    Writes ``config.json`` (resolved config, dataset config, git revision, versions),
    ``checkpoints/step-N`` every ``train.checkpoint_every`` steps, ``model/`` (the fine-tuned
    model and processor) and ``train_summary.json`` (loss log, wall time).
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    run_dir, train_split, dataset_config = prepare_run(config, run_dir, resume)
    settings = config.train
    defense = build_defense(config.defense, config.defense_options)
    # LLaVA's vision post-layernorm never gets a gradient, so DDP must allow unused parameters.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(settings.seed)
    bundle = build_model(
        config.model,
        texts=train_split.prompts + train_split.responses,
        image_size=train_split.images.shape[-1],
        seed=settings.seed,
        options=config.model_options,
    )
    _check_image_size(bundle, train_split, config.model, config.data)
    if accelerator.is_main_process and not resume:
        atomic_write_json(run_dir / "config.json", {"run": to_dict(config), "dataset": dataset_config, **run_info()})

    n = len(train_split.samples)
    batches_per_epoch = len(
        epoch_batches(n, settings.batch_size, settings.seed, 0, accelerator.process_index, accelerator.num_processes)
    )
    steps_per_epoch = math.ceil(batches_per_epoch / settings.gradient_accumulation)
    total_steps = steps_per_epoch * settings.epochs
    # A defense may ask for repair epochs after the schedule, with a cosine of their own from a fraction of the peak.
    repair_epochs, repair_lr = defense.repair_schedule()
    epochs = settings.epochs + repair_epochs
    all_steps = steps_per_epoch * epochs
    parameters = [parameter for parameter in bundle.model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.lr or bundle.recommended_lr, weight_decay=settings.weight_decay
    )
    warmup = int(settings.warmup_ratio * total_steps)
    scheduler = cosine_schedule(optimizer, warmup, total_steps, all_steps - total_steps, repair_lr)
    # The scheduler stays unprepared: Accelerate would step it once per process per call, while
    # total_steps already counts optimizer steps of the whole group. It is still checkpointed.
    bundle.model, optimizer = accelerator.prepare(bundle.model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    # Only a control that declares it (the perfect detector) sees the poison flags; real defenses get None.
    flags = None
    if getattr(defense, "reads_poison_flags", False):
        flags = np.array([bool(sample.meta.get("poisoned")) for sample in train_split.samples])
    defense.setup(
        DefenseContext(
            bundle=bundle,
            train_size=n,
            total_steps=total_steps,
            steps_per_epoch=steps_per_epoch,
            tasks=[sample.task for sample in train_split.samples],
            responses=list(train_split.responses),
            prompts=list(train_split.prompts),
            poison_flags=flags,
        )
    )

    step, log = 0, []
    checkpoint = _latest_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        step, log = state["step"], state["log"]
        defense.load_state_dict(torch.load(checkpoint / "defense_state.pt", weights_only=False))

    started = time.perf_counter()
    bundle.model.train()
    bar = tqdm(
        total=all_steps,
        initial=step,
        desc=f"train {config.defense}",
        disable=not progress or not accelerator.is_main_process,
    )
    for epoch in range(step // steps_per_epoch, epochs):
        if epoch >= settings.epochs and not defense.repair_needed(step):
            break
        batches = epoch_batches(
            n, settings.batch_size, settings.seed, epoch, accelerator.process_index, accelerator.num_processes
        )
        first = (step - epoch * steps_per_epoch) * settings.gradient_accumulation
        for micro, indices in enumerate(batches[first:], start=first):
            batch = Batch(
                indices=indices,
                prompts=[train_split.samples[i].prompt for i in indices.tolist()],
                responses=[train_split.samples[i].response for i in indices.tolist()],
                images=train_split.float_images(indices).to(accelerator.device),
            )
            boundary = (micro + 1) % settings.gradient_accumulation == 0 or micro == len(batches) - 1
            generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + step)
            # Gradients are synchronised across processes only on the micro-batch that ends a step.
            sync = contextlib.nullcontext() if boundary else accelerator.no_sync(bundle.model)
            with sync:
                views = defense.views(batch, step, generator)
                outputs = forward_views(bundle, batch, views)
                weights, terms = defense.loss_terms(batch, outputs, step)
                sample_loss = outputs["original"].sample_loss
                task_loss = (sample_loss if weights is None else weights * sample_loss).mean()
                loss = task_loss + sum(terms.values())
                accelerator.backward(loss / settings.gradient_accumulation)
            if not boundary:
                continue
            if settings.max_grad_norm > 0:
                accelerator.clip_grad_norm_(parameters, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            values = {"task_loss": task_loss.item(), **{key: value.item() for key, value in terms.items()}}
            bar.update()
            bar.set_postfix({key: f"{value:.3f}" for key, value in values.items()}, refresh=False)
            # The schedule's last step is logged too: the run ends there when no repair epoch follows.
            if step % settings.log_every == 0 or step in (total_steps, all_steps):
                log.append({"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0], **values})
            if settings.checkpoint_every and step % settings.checkpoint_every == 0 and step < all_steps:
                _save_checkpoint(accelerator, run_dir, step, defense, log)
    bar.close()
    elapsed = time.perf_counter() - started

    epochs_done = math.ceil(step / steps_per_epoch)
    summary = {
        "steps": step,
        "epochs": epochs_done,
        "repair_epochs": max(0, epochs_done - settings.epochs),
        "lr": optimizer.param_groups[0]["initial_lr"],
        "train_seconds": elapsed,
        "log": log,
    }
    if hasattr(defense, "summary"):
        summary["defense"] = defense.summary()
    _save_checkpoint(accelerator, run_dir, step, defense, log)
    if accelerator.is_main_process:
        bundle.model = accelerator.unwrap_model(bundle.model)
        save_final_model(bundle, run_dir / "model")
        atomic_write_json(run_dir / "train_summary.json", summary)
    return summary


def save_final_model(bundle, path: Path) -> None:
    """Save the fine-tuned model through a temporary directory so a kill never leaves half a model."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    bundle.save(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
