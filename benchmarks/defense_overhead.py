"""Training-step time with a defense over without, measured side by side in one process.

    python benchmarks/defense_overhead.py --model llava:tiny --defense pcr

Builds the model once per defense from the same seed, then runs each defense through a compressed
copy of the training schedule, every epoch of it (``--epochs``, then the defense's repair epochs)
``--steps-per-epoch`` steps long, alternating steps with the undefended loop (so machine noise hits
both alike). A defense's cost can differ from epoch to epoch (pcr scores only in some with
``score_every``, and its last epoch views only the samples it unlearns), so it prints each epoch's
median step time over the undefended median in the same epoch, and the whole training's ratio: those
ratios summed (repair epochs too) over the ``--epochs`` of an undefended run. Before the repair
epochs, ``--flag-fraction`` of the samples are flagged and unlearnt, as when pcr has found the
poison (a random model finds nothing). Each step is the loop's real work: views, batched forward,
loss terms, backward, AdamW.

At real size, on a GPU (a 7B-shaped LLaVA-1.5, random weights, bf16, LoRA, frozen vision tower):

    python benchmarks/defense_overhead.py --model llava:7b --image-size 336 --batch-size 8 \
        --dtype bfloat16 --lora --freeze-vision --share-model --steps-per-epoch 2 --variant score_every=2

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
from tqdm import tqdm

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


def make_stepper(
    bundle, optimizer, defense_name: str, split, batch_size: int, epochs: int, steps_per_epoch: int, options=None
):
    """The defended step at any step of a schedule of ``epochs`` epochs of ``steps_per_epoch`` steps."""
    defense = build_defense(defense_name, options)
    defense.setup(DefenseContext(bundle, len(split.samples), epochs * steps_per_epoch, steps_per_epoch))
    cuda = bundle.device.type == "cuda"

    def step(index: int) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
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
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step.defense = defense
    return step


def flag_for_repair(defense, fraction: float) -> None:
    """Flag a random ``fraction`` of the samples for unlearning, as pcr does once it has found the poison."""
    if fraction > 0 and hasattr(defense, "flagged"):
        chosen = torch.randperm(len(defense.flagged), generator=torch.Generator().manual_seed(0))
        defense.flagged[chosen[: round(fraction * len(defense.flagged))].numpy()] = True
        defense.unlearning = True


def parse_options(items: list[str]) -> dict:
    """``KEY=VALUE`` strings as a dict, each value read as YAML (numbers, booleans, lists)."""
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="llava:tiny")
    parser.add_argument("--defense", default="pcr")
    parser.add_argument("--epochs", type=int, default=12, help="Epochs of the schedule (then the repair epochs).")
    parser.add_argument("--steps-per-epoch", type=int, default=16, help="Measured steps in each epoch.")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--flag-fraction", type=float, default=0.05, help="Samples flagged before the repair epochs (the poison rate)."
    )
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="A defense option, e.g. score_every=2."
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
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
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
        defended[f"{args.defense}[{variant}]"] = {**options, **parse_options(variant.split(","))}
    runs = {"none": ("none", None), **{name: (args.defense, value) for name, value in defended.items()}}
    shared = build_trained(args.model, split, model_options, args.device) if args.share_model else None
    steppers, epochs = {}, {}
    for name, (defense, defense_options) in runs.items():
        bundle, optimizer = shared or build_trained(args.model, split, model_options, args.device)
        steppers[name] = make_stepper(
            bundle, optimizer, defense, split, args.batch_size, args.epochs, args.steps_per_epoch, defense_options
        )
        epochs[name] = args.epochs + steppers[name].defense.repair_schedule()[0]
    epochs["none"] = max(epochs.values())  # the reference runs in every epoch, beside each defended one
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()  # training's peak, not the fp32 build's
    for stepper in steppers.values():  # warm-up (allocator, kernels) on a step of the first epoch
        for _ in range(3):
            stepper(0)
    # times[name][epoch]: the step times in each epoch of the compressed schedule, the steppers alternating.
    times: dict[str, list[list[float]]] = {name: [[] for _ in range(epochs[name])] for name in steppers}
    spe = args.steps_per_epoch
    for epoch in tqdm(range(max(epochs.values())), desc="epochs", disable=args.quiet):
        if epoch == args.epochs:
            for stepper in steppers.values():
                flag_for_repair(stepper.defense, args.flag_fraction)
        for index in range(epoch * spe, (epoch + 1) * spe):
            for name, stepper in steppers.items():
                if epoch < epochs[name]:
                    times[name][epoch].append(stepper(index))
    # Each epoch's defended median over the undefended median of the same epoch: the machine's drift
    # over the run (llava:tiny, 2 threads: 0.8x-1.7x between epochs against one median) cancels.
    none = [statistics.median(values) for values in times["none"]]
    where = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, threads {torch.get_num_threads()}"
    )
    print(
        f"model {args.model} ({model_options.dtype}, lora {args.lora}, vision frozen {args.freeze_vision}, "
        f"checkpointing {args.gradient_checkpointing}), images {args.image_size} px, batch {args.batch_size}, "
        f"{args.epochs} epochs of {spe} steps, {where}, model shared {args.share_model}, "
        f"{args.defense} options {options or 'default'}, {args.flag_fraction:.0%} flagged before the repair epochs"
    )
    if args.device.startswith("cuda"):
        print(f"  peak GPU memory in training {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    print(f"  none: median step {1000 * statistics.median(none[: args.epochs]):.1f} ms (median of the epochs')")
    for name in defended:
        ratios = [statistics.median(values) / none[epoch] for epoch, values in enumerate(times[name])]
        shown = " ".join(f"{ratio:.2f}" for ratio in ratios[: args.epochs])
        repair = " ".join(f"{ratio:.2f}" for ratio in ratios[args.epochs :])
        print(f"  {name}: step-time ratio per epoch {shown}" + (f" | repair {repair}" if repair else ""))
        total = sum(ratios) / args.epochs
        print(f"    training wall-time ratio, {len(ratios)} epochs over {args.epochs}: {total:.2f}x")


if __name__ == "__main__":
    main()
