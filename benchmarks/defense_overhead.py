"""Training-step time with a defense over without, measured side by side in one process.

    python benchmarks/defense_overhead.py --model llava:tiny --defense pcr

Builds the model once per defense from the same seed, then alternates steps between the
undefended loop and the defended one (so machine noise hits both alike) and prints the
median step time of each and their ratio, and the whole training's ratio once a defense's repair
epochs are counted (they are defended steps too). Each step is the loop's real work: views, batched
forward, loss terms, backward, AdamW.
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
from vlshield.models import build_model
from vlshield.poisoning import PoisonConfig, poison_dataset
from vlshield.training.data import load_split
from vlshield.training.forward import forward_views


def make_stepper(spec: str, defense_name: str, split, batch_size: int, options: dict | None = None):
    bundle = build_model(spec, texts=split.prompts + split.responses, image_size=split.images.shape[-1], seed=0)
    bundle.model.train()
    defense = build_defense(defense_name, options)
    steps_per_epoch = len(split.samples) // batch_size
    defense.setup(DefenseContext(bundle, len(split.samples), 10 * steps_per_epoch, steps_per_epoch))
    optimizer = torch.optim.AdamW(bundle.model.parameters(), lr=1e-3)
    state = {"step": 0}

    def step() -> float:
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
        return time.perf_counter() - start

    return step


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = poison_dataset(PoisonConfig(limit=256, test_size=8), Path(tmp) / "data", progress=False)
        split = load_split(data / "train.jsonl")
    options = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.option)}
    steppers = {
        "none": make_stepper(args.model, "none", split, args.batch_size),
        args.defense: make_stepper(args.model, args.defense, split, args.batch_size, options),
    }
    for stepper in steppers.values():  # warm-up: allocator, kernels
        for _ in range(3):
            stepper()
    times: dict[str, list[float]] = {name: [] for name in steppers}
    while len(times["none"]) < args.steps:
        for name, stepper in steppers.items():
            times[name].extend(stepper() for _ in range(args.block))
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"model {args.model}, batch {args.batch_size}, {args.steps} steps each, threads {torch.get_num_threads()}, "
        f"{args.defense} options {options or 'default'}"
    )
    for name, value in medians.items():
        print(f"  {name:>8}: median step {1000 * value:.1f} ms")
    ratio = medians[args.defense] / medians["none"]
    print(f"  step-time ratio {args.defense}/none: {ratio:.2f}x")
    # Repair epochs (pcr's, after the schedule) cost as many defended steps again as they are long.
    repair_epochs, _ = build_defense(args.defense, options).repair_schedule()
    if repair_epochs:
        total = ratio * (args.epochs + repair_epochs) / args.epochs
        print(
            f"  training wall-time ratio with its {repair_epochs} repair epoch(s) after {args.epochs} epochs: "
            f"{ratio:.2f} x {args.epochs + repair_epochs}/{args.epochs} = {total:.2f}x"
        )


if __name__ == "__main__":
    main()
