"""A benchmark grid: models x tasks x datasets x attacks x defenses x poison rates x seeds.

A grid is a YAML file (or a shipped name: ``smoke``, ``demo``, ``paper``) read into ``GridConfig``.
Its axes span one product of cells; ``blocks`` add further products whose unspecified axes take
the top-level values (the ``paper`` grid adds 1 % and 10 % poisoning for LLaVA captioning this
way). The shared settings (``poison``, ``attack_options``, ``train``, ``eval``, ``model_options``,
``defense_options``) hold the same keys as the single commands' configs.

``check_grid`` validates the whole grid before any cell runs and names every bad entry at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import itertools
import json
import re
from pathlib import Path
from typing import Any

from vlshield.config import ConfigError, field, from_dict, load_yaml, merge, parse_overrides, to_dict
from vlshield.poisoning import PoisonConfig
from vlshield.training.config import EvalConfig, RunConfig, TrainConfig

AXES = ("models", "tasks", "datasets", "attacks", "defenses", "rates", "seeds")
# Keys of PoisonConfig that the grid's axes (or ``attack_options``) set per cell.
CELL_POISON_KEYS = ("dataset", "task", "attack", "rate", "seed", "attack_options")
EVERY = "all"  # ``attacks: [all]`` / ``defenses: [all]``: every registered entry, in registry order
_HUB_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+=-]")


@dataclasses.dataclass(frozen=True)
class GridBlock:
    """One more product of cells; an axis left out takes the grid's top-level value."""

    models: tuple[str, ...] | None = field(None, help="Model specs (FAMILY:PRESET, a directory or a hub name).")
    tasks: tuple[str, ...] | None = field(None, help="caption and/or vqa.")
    datasets: tuple[str, ...] | None = field(None, help="Built-in dataset names or dataset file paths.")
    attacks: tuple[str, ...] | None = field(None, help="Attack registry names (or all).")
    defenses: tuple[str, ...] | None = field(None, help="Defense registry names (or all).")
    rates: tuple[float, ...] | None = field(None, help="Poison rates in (0, 1].")
    seeds: tuple[int, ...] | None = field(None, help="Seeds (data, poison choice and training).")


@dataclasses.dataclass(frozen=True)
class GridConfig:
    """A benchmark grid: its axes, extra blocks, and the settings every cell shares."""

    name: str = field("grid", help="Name shown in the results and the report.")
    description: str = field("", help="What the grid is for.")
    models: tuple[str, ...] = field(("llava:tiny",), help="Model specs (FAMILY:PRESET, a directory or a hub name).")
    tasks: tuple[str, ...] = field(("caption",), help="caption and/or vqa.")
    datasets: tuple[str, ...] = field(("shapes",), help="Built-in dataset names or dataset file paths.")
    attacks: tuple[str, ...] = field(("badnet",), help="Attack registry names (or all).")
    defenses: tuple[str, ...] = field(("none", "pcr"), help="Defense registry names (or all).")
    rates: tuple[float, ...] = field((0.05,), help="Poison rates in (0, 1].")
    seeds: tuple[int, ...] = field((0,), help="Seeds: each seeds the data, the poison choice and the training.")
    blocks: tuple[GridBlock, ...] = field((), help="Further products of cells (axes not given: the top level's).")
    poison: dict[str, Any] = field(default_factory=dict, help="PoisonConfig settings: limit, test_size, image_size.")
    attack_options: dict[str, Any] = field(default_factory=dict, help="Per attack name: its config overrides.")
    train: dict[str, Any] = field(default_factory=dict, help="TrainConfig overrides (train.seed comes from seeds).")
    eval: dict[str, Any] = field(default_factory=dict, help="EvalConfig overrides (batch_size, max_new_tokens).")
    model_options: dict[str, Any] = field(default_factory=dict, help="ModelOptions (LoRA, freezing, dtype).")
    defense_options: dict[str, Any] = field(default_factory=dict, help="Per defense name: its config overrides.")

    def cells(self) -> list[Cell]:
        """Every cell, in a fixed order (blocks in order, axes nested as in ``AXES``), without duplicates."""
        seen: dict[Cell, None] = {}
        for axes in self.products():
            for model, task, dataset, attack, defense, rate, seed in itertools.product(*(axes[a] for a in AXES)):
                seen.setdefault(Cell(model, task, dataset, attack, defense, float(rate), int(seed)), None)
        return list(seen)

    def products(self) -> list[dict[str, tuple]]:
        """The axes of each product of cells: the top level's, then one per block (``all`` expanded)."""
        top = {axis: _expand(axis, getattr(self, axis)) for axis in AXES}
        products = [top]
        for block in self.blocks:
            products.append({axis: _expand(axis, getattr(block, axis) or top[axis]) for axis in AXES})
        return products

    def poison_config(self, cell: Cell) -> PoisonConfig:
        """The resolved PoisonConfig of a cell (keys reported as ``poison.*``)."""
        settings = merge(
            self.poison,
            {
                "dataset": cell.dataset,
                "task": cell.task,
                "attack": cell.attack,
                "rate": cell.rate,
                "seed": cell.seed,
                "attack_options": self.attack_options.get(cell.attack) or {},
            },
        )
        return from_dict(PoisonConfig, settings, prefix="poison.")

    def run_config(self, cell: Cell, data_dir: str | Path) -> RunConfig:
        """The resolved RunConfig of a cell trained on ``data_dir``; the cell's seed seeds the training."""
        settings = {
            "data": str(data_dir),
            "model": cell.model,
            "model_options": self.model_options,
            "train": merge(self.train, {"seed": cell.seed}),
            "defense": cell.defense,
            "defense_options": self.defense_options.get(cell.defense) or {},
            "eval": self.eval,
        }
        return from_dict(RunConfig, settings)

    def with_seeds(self, seeds: tuple[int, ...]) -> GridConfig:
        """The same grid run at ``seeds`` (every block included)."""
        blocks = tuple(dataclasses.replace(block, seeds=None) for block in self.blocks)
        return dataclasses.replace(self, seeds=tuple(seeds), blocks=blocks)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: ``dataset``/``task`` poisoned by ``attack`` at ``rate``, ``model`` with ``defense``."""

    model: str
    task: str
    dataset: str
    attack: str
    defense: str
    rate: float
    seed: int

    @property
    def name(self) -> str:
        """``model--task--attack--defense--rate--seed``, filesystem-safe (``:`` and ``/`` become ``_``).

        The task part reads ``task@dataset`` for any dataset but the built-in ``shapes``, so that
        grids over several datasets still give one file per cell.
        """
        task = self.task if self.dataset == "shapes" else f"{self.task}@{self.dataset}"
        parts = (self.model, task, self.attack, self.defense, f"{self.rate:g}", str(self.seed))
        return "--".join(safe_name(part) for part in parts)

    @property
    def data_key(self) -> str:
        """What the poisoned dataset depends on among the axes: cells differing only in model or defense share it."""
        parts = (self.dataset, self.task, self.attack, f"{self.rate:g}", str(self.seed))
        return "--".join(safe_name(part) for part in parts)

    @property
    def family(self) -> str | None:
        """The model family of a ``FAMILY:PRESET`` spec (None for checkpoints)."""
        family, colon, _ = self.model.partition(":")
        return family if colon else None


def safe_name(text: str) -> str:
    """``text`` usable as one path component: every character but letters, digits and ``_.@+=-`` becomes ``_``."""
    return _UNSAFE.sub("_", text.strip().rstrip("/")).lstrip(".") or "_"


def config_digest(config: Any) -> str:
    """8 hex digits identifying a resolved config (the poisoned-data cache key includes it)."""
    text = json.dumps(to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def _expand(axis: str, values: tuple) -> tuple:
    """``all`` in the attacks or defenses axis becomes every registered name."""
    if axis not in ("attacks", "defenses") or EVERY not in values:
        return tuple(values)
    from vlshield.attacks import ATTACKS
    from vlshield.defenses import DEFENSES

    registry = ATTACKS if axis == "attacks" else DEFENSES
    expanded = [name for value in values for name in (registry if value == EVERY else [value])]
    return tuple(dict.fromkeys(expanded))


# ---------------------------------------------------------------- loading


def shipped_grids() -> dict[str, Path]:
    """The grids installed with the package, by name (``smoke``, ``demo``, ``paper``)."""
    folder = importlib.resources.files("vlshield") / "configs" / "grids"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def load_grid(
    spec: str | Path, overrides: list[str] | tuple[str, ...] = (), seeds: tuple[int, ...] | None = None
) -> GridConfig:
    """Read a grid from a shipped name or a YAML path, apply dotted ``overrides`` and ``seeds``; not yet checked.

    Args:
        spec: ``smoke``, ``demo``, ``paper`` or a path to a YAML file.
        overrides: e.g. ``["train.epochs=2", "poison.limit=100"]`` (later wins).
        seeds: replace the seeds of the grid and all its blocks.
    """
    shipped = shipped_grids()
    path = Path(spec)
    if str(spec) in shipped and not path.is_file():
        path = shipped[str(spec)]
    elif not path.is_file():
        raise ConfigError(f"--grid: {spec} is neither a shipped grid ({', '.join(sorted(shipped))}) nor a YAML file")
    data = merge(load_yaml(path), parse_overrides(list(overrides)))
    data.setdefault("name", path.stem)
    grid = from_dict(GridConfig, data)
    return grid.with_seeds(seeds) if seeds else grid


# ---------------------------------------------------------------- validation


def check_grid(grid: GridConfig) -> list[Cell]:
    """The grid's cells, or a ConfigError naming every bad entry (before anything runs)."""
    errors = grid_errors(grid)
    if errors:
        raise ConfigError(f"grid {grid.name!r} has {len(errors)} bad entries: " + "; ".join(errors))
    return grid.cells()


def grid_errors(grid: GridConfig) -> list[str]:
    """Every problem of the grid, one message each; empty when the grid can run."""
    values = {axis: tuple(dict.fromkeys(v for product in grid.products() for v in product[axis])) for axis in AXES}
    errors = [f"{axis}: empty" for axis in AXES if not values[axis]]
    errors += [message for spec in values["models"] if (message := model_error(spec))]
    errors += _registry_errors(values)
    errors += _settings_errors(grid, values)
    if not errors:
        errors += _cell_errors(grid)
    return errors


def model_error(spec: str) -> str | None:
    """Why ``spec`` names no model (None when it does): FAMILY:PRESET of a registered family, a directory, a hub name.

    A hub name (``owner/name``) is accepted unchecked: it is loaded when its cell runs.
    """
    from vlshield.models import MODEL_FAMILIES, PRESET_SIZES

    if Path(spec).expanduser().is_dir():
        return None
    if _HUB_NAME.fullmatch(spec) and not spec.startswith((".", "~")):
        return None
    family, colon, preset = spec.partition(":")
    if not colon:
        return f"model {spec!r} is neither FAMILY:PRESET, an existing directory, nor a hub name (owner/name)"
    if family not in MODEL_FAMILIES:
        return f"unknown model family {family!r} in {spec!r} (families: {', '.join(MODEL_FAMILIES)})"
    if preset not in PRESET_SIZES:
        return f"unknown preset {preset!r} in {spec!r} (presets: {', '.join(PRESET_SIZES)})"
    return None


def _registry_errors(values: dict[str, tuple]) -> list[str]:
    from vlshield.attacks import ATTACKS
    from vlshield.data.registry import BUILTIN_DATASETS
    from vlshield.data.sample import TASKS
    from vlshield.defenses import DEFENSES

    errors = [f"unknown task {task!r} (tasks: {', '.join(TASKS)})" for task in values["tasks"] if task not in TASKS]
    errors += [
        f"unknown attack {name!r} (attacks: {', '.join(ATTACKS)})" for name in values["attacks"] if name not in ATTACKS
    ]
    errors += [
        f"unknown defense {name!r} (defenses: {', '.join(DEFENSES)})"
        for name in values["defenses"]
        if name not in DEFENSES
    ]
    errors += [
        f"unknown dataset {name!r} (built-in: {', '.join(BUILTIN_DATASETS)}; or an existing file)"
        for name in values["datasets"]
        if name not in BUILTIN_DATASETS and not Path(name).expanduser().is_file()
    ]
    errors += [f"rate {rate} is outside (0, 1]" for rate in values["rates"] if not 0.0 < rate <= 1.0]
    return errors


def _settings_errors(grid: GridConfig, values: dict[str, tuple]) -> list[str]:
    """The shared settings: keys the axes own, and each section built into its config dataclass."""
    from vlshield.attacks import ATTACKS, build_attack
    from vlshield.defenses import DEFENSES
    from vlshield.models import ModelOptions

    errors = [f"poison.{key}: set per cell by the grid's axes" for key in CELL_POISON_KEYS if key in grid.poison]
    if "seed" in grid.train:
        errors.append("train.seed: set per cell by the grid's seeds")
    for name, options in grid.attack_options.items():
        if name not in values["attacks"]:
            errors.append(f"attack_options.{name}: not an attack of this grid")
        elif name in ATTACKS:
            errors += _error_of(lambda name=name, options=options: build_attack(name, options or {}))
    for name, options in grid.defense_options.items():
        if name not in values["defenses"]:
            errors.append(f"defense_options.{name}: not a defense of this grid")
        elif name in DEFENSES:
            config_cls, prefix = DEFENSES[name][0], f"defense_options.{name}."
            errors += _error_of(lambda c=config_cls, o=options, p=prefix: from_dict(c, o or {}, prefix=p))
    errors += _error_of(lambda: from_dict(TrainConfig, grid.train, prefix="train."))
    errors += _error_of(lambda: from_dict(EvalConfig, grid.eval, prefix="eval."))
    errors += _error_of(lambda: from_dict(ModelOptions, grid.model_options, prefix="model_options."))
    return errors


def _cell_errors(grid: GridConfig) -> list[str]:
    """Per distinct poisoning and model: the resolved configs build, the poison count is not 0, the size fits."""
    from vlshield.models import MODEL_FAMILIES, PRESET_SIZES

    errors: list[str] = []
    cells = grid.cells()
    for cell in {cell.data_key: cell for cell in cells}.values():
        found = _error_of(lambda cell=cell: grid.poison_config(cell))
        if not found:
            config = grid.poison_config(cell)
            if config.limit is not None and round(config.rate * config.limit) == 0:
                found = [f"rate {cell.rate} of poison.limit {config.limit} rounds to 0 poisoned samples"]
        errors += found
    image_size = int(grid.poison.get("image_size", PoisonConfig.image_size))
    for model in dict.fromkeys(cell.model for cell in cells):
        family, colon, preset = model.partition(":")
        if colon and family in MODEL_FAMILIES and preset in PRESET_SIZES:
            check = MODEL_FAMILIES[family].check_image_size
            errors += _error_of(lambda check=check, size=PRESET_SIZES[preset]: check(size, image_size))
    return list(dict.fromkeys(errors))


def _error_of(build: Any) -> list[str]:
    """``[message]`` if ``build()`` raises ConfigError, else ``[]``."""
    try:
        build()
    except ConfigError as error:
        return [str(error)]
    return []
