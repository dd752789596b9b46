"""Training-step time with a defense over without, measured side by side in one process.

    python benchmarks/defense_overhead.py --model llava:tiny --defense pcr

Builds the model once per defense from the same seed, then alternates steps between the
undefended loop and the defended one (so machine noise hits both alike) and prints the
median step time of each and their ratio, and the whole training's ratio once a defense's repair
epochs are counted (they are defended steps too). Each step is the loop's real work: views, batched
forward, loss terms, backward, AdamW.

At real size, on a GPU (a 7B-shaped LLaVA-1.5, random weights, bf16, LoRA, frozen vision tower):

    python benchmarks/defense_overhead.py --model llava:7b --image-size 336 --batch-size 8 \
        --dtype bfloat16 --lora --freeze-vision --share-model --steps 30 --variant score_fraction=0.5

``--share-model`` trains one model with every stepper in turn (a step's cost does not depend on
the weights' values), so that several variants fit in the GPU's memory; ``--variant`` adds a
stepper of the same defense with other options.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from vlshield.defenses import build_defense
from vlshield.defenses.base import Batch, DefenseContext
from vlshield.models import ModelOptions, build_model
from vlshield.poisoning import PoisonConfig, poison_dataset
from vlshield.training.data import load_split
from vlshield.training.forward import forward_views


def build_trained(spec: str, split, options: ModelOptions, device: str):
    """A bundle built on ``device`` in training mode, and AdamW over its trainable parameters."""
    with torch.device(device):  # allocate the weights there: a 7B-shaped model is never built on the CPU
        bundle = build_model(
            spec, texts=split.prompts + split.responses, image_size=split.images.shape[-1], seed=0, options=options
        )
    bundle.model.train()
    optimizer = torch.optim.AdamW([p for p in bundle.model.parameters() if p.requires_grad], lr=1e-4)
    return bundle, optimizer


def make_stepper(bundle, optimizer, defense_name: str, split, batch_size: int, options: dict | None = None):
    defense = build_defense(defense_name, options)
    steps_per_epoch = len(split.samples) // batch_size
    defense.setup(DefenseContext(bundle, len(split.samples), 10 * steps_per_epoch, steps_per_epoch))
    cuda = bundle.device.type == "cuda"
    state = {"step": 0}

    def step() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        index = state["step"]
        indices = torch.arange(index * batch_size, (index + 1) * batch_size) % len(split.samples)
        batch = Batch(
            indices,
            [split.prompts[i] for i in indices],
            [split.responses[i] for i in indices],
            split.float_images(indices),
        )
        outputs = forward_views(bundle, batch, defense.views(batch, index, torch.Generator().manual_seed(index)))
        weights, terms = defense.loss_terms(batch, outputs, index)
        sample_loss = outputs["original"].sample_loss
        loss = (sample_loss if weights is None else weights * sample_loss).mean() + sum(terms.values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        state["step"] += 1
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def parse_options(items: list[str]) -> dict:
    """``KEY=VALUE`` strings as a dict, each value read as YAML (numbers, booleans, lists)."""
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llava:tiny")
    parser.add_argument("--defense", default="pcr")
    parser.add_argument("--steps", type=int, default=200, help="Measured steps per defense.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--block",
        type=int,
        default=1,
        help="Steps per alternation block (blocks of 5 over 40 steps varied +-0.06x run to run).",
    )
    parser.add_argument("--epochs", type=int, default=12, help="Schedule length, for the repair epochs' share.")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="A defense option, e.g. score_fraction=0.5."
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="Another stepper of the same defense with these options on top of --option (repeatable).",
    )
    parser.add_argument("--image-size", type=int, default=64, help="Side of the rendered shapes images.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--lora", action="store_true", help="Train LoRA adapters on the language model.")
    parser.add_argument("--freeze-vision", action="store_true", help="Freeze the vision tower.")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument(
        "--share-model", action="store_true", help="One model and optimizer for every stepper (fits big models)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = PoisonConfig(limit=256, test_size=8, image_size=args.image_size)
        data = poison_dataset(config, Path(tmp) / "data", progress=False)
        split = load_split(data / "train.jsonl")
    model_options = ModelOptions(
        lora=args.lora,
        freeze_vision=args.freeze_vision,
        dtype=args.dtype,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    options = parse_options(args.option)
    defended = {args.defense: options}
    for variant in args.variant:
        extra = parse_options(variant.split(","))
        defended[f"{args.defense}[{variant}]"] = {**options, **extra}
    shared = build_trained(args.model, split, model_options, args.device) if args.share_model else None
    steppers = {}
    runs = {"none": ("none", None), **{name: (args.defense, value) for name, value in defended.items()}}
    for name, (defense, defense_options) in runs.items():
        bundle, optimizer = shared or build_trained(args.model, split, model_options, args.device)
        steppers[name] = make_stepper(bundle, optimizer, defense, split, args.batch_size, defense_options)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()  # training's peak, not the fp32 build's
    for stepper in steppers.values():  # warm-up: allocator, kernels
        for _ in range(3):
            stepper()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    while len(times["none"]) < args.steps:
        for name, stepper in steppers.items():
            times[name].extend(stepper() for _ in range(args.block))
    medians = {name: statistics.median(values) for name, values in times.items()}
    where = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, threads {torch.get_num_threads()}"
    )
    print(
        f"model {args.model} ({model_options.dtype}, lora {args.lora}, vision frozen {args.freeze_vision}, "
        f"checkpointing {args.gradient_checkpointing}), images {args.image_size} px, batch {args.batch_size}, "
        f"{args.steps} steps each, {where}, model shared {args.share_model}, "
        f"{args.defense} options {options or 'default'}"
    )
    if args.device.startswith("cuda"):
        print(f"  peak GPU memory in training {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    for name, value in medians.items():
        print(f"  {name:>8}: median step {1000 * value:.1f} ms")
    for name, defense_options in defended.items():
        ratio = medians[name] / medians["none"]
        print(f"  step-time ratio {name}/none: {ratio:.2f}x")
        # Repair epochs (pcr's, after the schedule) cost as many defended steps again as they are long.
        repair_epochs, _ = build_defense(args.defense, defense_options).repair_schedule()
        if repair_epochs:
            total = ratio * (args.epochs + repair_epochs) / args.epochs
            print(
                f"    training wall-time ratio with its {repair_epochs} repair epoch(s) after {args.epochs} epochs: "
                f"{ratio:.2f} x {args.epochs + repair_epochs}/{args.epochs} = {total:.2f}x"
            )


if __name__ == "__main__":
    main()
