"""Grids: shipped YAML validates, bad entries are all named at once, cells, names and shards."""

from __future__ import annotations

import pytest
import yaml

from vlshield.attacks import ATTACKS
from vlshield.benchmark.grid import Cell, GridConfig, check_grid, load_grid, safe_name, shipped_grids
from vlshield.benchmark.runner import Shard
from vlshield.config import ConfigError
from vlshield.defenses import DEFENSES


def _write(tmp_path, data: dict):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["smoke", "demo", "paper"])
def test_every_shipped_grid_validates(name):
    assert name in shipped_grids()
    grid = load_grid(name)
    cells = check_grid(grid)
    assert grid.name == name
    assert len(cells) == len(set(cells)) > 0


def test_paper_grid_is_the_seed_papers_scale():
    cells = check_grid(load_grid("paper"))
    defenses = 4  # none, pcr and the controls oracle and random_flags (pcr's ablations have a grid of their own)
    # 3 families x 2 tasks x 6 attacks x 4 defenses at 5 %, plus 6 attacks x 4 defenses at 1 % and 10 %.
    assert len(cells) == 3 * 2 * 6 * defenses + 6 * defenses * 2
    extra = [cell for cell in cells if cell.rate != 0.05]
    assert {(cell.model, cell.task) for cell in extra} == {("llava:tiny", "caption")}
    assert {cell.rate for cell in extra} == {0.01, 0.1}
    assert {cell.defense for cell in cells} == set(DEFENSES) - {"pcr_aug", "pcr_aug_cross"}
    assert {cell.seed for cell in cells} == {0}


def test_seeds_option_and_overrides_reach_every_cell():
    grid = load_grid("paper", overrides=["train.epochs=2", "poison.limit=100"], seeds=(0, 1, 2))
    cells = check_grid(grid)
    assert len(cells) == 3 * len(check_grid(load_grid("paper")))
    cell = cells[-1]
    assert cell.seed == 2
    run = grid.run_config(cell, "data/x")
    assert (run.train.epochs, run.train.seed, run.model, run.defense) == (2, 2, cell.model, cell.defense)
    assert grid.poison_config(cell).limit == 100


def test_a_bad_grid_names_every_bad_entry(tmp_path):
    path = _write(
        tmp_path,
        {
            "models": ["llava:tiny", "nosuchfamily:tiny", "llava:gigantic", "justaword"],
            "tasks": ["caption", "captioning"],
            "attacks": ["badnet", "badnets", "blendd"],
            "defenses": ["none", "shield"],
            "datasets": ["shapes", "no-such-dataset"],
        },
    )
    with pytest.raises(ConfigError) as error:
        check_grid(load_grid(path))
    message = str(error.value)
    bad = ("nosuchfamily", "gigantic", "justaword", "captioning", "badnets", "blendd", "shield", "no-such-dataset")
    assert all(name in message for name in bad), message
    assert "has 8 bad entries" in message
    for good in ("'llava:tiny'", "'badnet'", "'none'"):
        assert good not in message


def test_bad_shared_settings_are_named_too(tmp_path):
    path = _write(
        tmp_path,
        {
            "attacks": ["badnet"],
            "poison": {"rate": 0.1, "limit": 10},
            "train": {"seed": 3, "epochs": 0},
            "attack_options": {"badnet": {"no_such_knob": 1}, "sig": {}},
            "defense_options": {"pcr": {"mode": "bogus"}},
        },
    )
    with pytest.raises(ConfigError) as error:
        check_grid(load_grid(path))
    message = str(error.value)
    for expected in ("poison.rate", "train.seed", "train.epochs", "no_such_knob", "attack_options.sig", "mode"):
        assert expected in message


def test_a_rate_that_poisons_nothing_is_an_error(tmp_path):
    path = _write(tmp_path, {"rates": [0.01], "poison": {"limit": 20}})  # round(0.2) == 0
    with pytest.raises(ConfigError, match="rounds to 0"):
        check_grid(load_grid(path))


def test_unknown_grid_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="demo, paper, smoke"):
        load_grid("nosuchgrid")


def test_all_expands_to_the_registries():
    grid = GridConfig(attacks=("all",), defenses=("all",))
    cells = check_grid(grid)
    assert [cell.attack for cell in cells[:: len(DEFENSES)]] == list(ATTACKS)
    assert {cell.defense for cell in cells} == set(DEFENSES)


def test_cell_file_names():
    cell = Cell("llava:tiny", "caption", "shapes", "badnet", "pcr", 0.05, 0)
    assert cell.name == "llava_tiny--caption--badnet--pcr--0.05--0"
    assert cell.data_key == "shapes--caption--badnet--0.05--0"
    other = Cell("/ckpt/llava-1.5/", "vqa", "easy-vqa", "sig", "none", 0.1, 2)
    assert other.name == "_ckpt_llava-1.5--vqa@easy-vqa--sig--none--0.1--2"
    hub = Cell("llava-hf/llava-1.5-7b-hf", "caption", "shapes", "wanet", "none", 0.01, 1)
    assert hub.name == "llava-hf_llava-1.5-7b-hf--caption--wanet--none--0.01--1"
    assert safe_name("a b:c/d") == "a_b_c_d"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 7])
def test_shards_partition_the_cells_exactly(count):
    cells = check_grid(load_grid("paper"))
    shards = [Shard(index, count).select(cells) for index in range(count)]
    indices = [index for shard in shards for index, _ in shard]
    assert sorted(indices) == list(range(len(cells)))  # union is everything, nothing twice
    for index, shard in enumerate(shards):
        assert all(i % count == index for i, _ in shard)
        assert [cells[i] for i, _ in shard] == [cell for _, cell in shard]


@pytest.mark.parametrize("text", ["2/2", "-1/3", "1", "a/b", "0/0"])
def test_bad_shards_are_rejected(text):
    with pytest.raises(ConfigError, match="--shard"):
        Shard.parse(text)
