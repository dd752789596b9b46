"""The training loop end to end on a tiny LLaVA: files, resume after SIGKILL, bad input, defense honesty."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vlshield.config import ConfigError, to_dict
from vlshield.data.sample import DataError
from vlshield.defenses import build_defense
from vlshield.defenses.base import Batch, DefenseContext, View
from vlshield.defenses.pcr import PCRConfig
from vlshield.models import build_model
from vlshield.poisoning import PoisonConfig, poison_dataset
from vlshield.storage import source_sha256
from vlshield.training.config import RunConfig, TrainConfig
from vlshield.training.data import load_split
from vlshield.training.forward import forward_views, response_cross_entropy
from vlshield.training.loop import train

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "badnet"
    return poison_dataset(PoisonConfig(limit=48, test_size=8, rate=0.125), out, progress=False)


def _config(data_dir: Path, **train) -> RunConfig:
    settings = {"epochs": 2, "batch_size": 8, "checkpoint_every": 4, "log_every": 1, **train}
    return RunConfig(data=str(data_dir), model="llava:tiny", train=TrainConfig(**settings))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def test_response_cross_entropy_by_hand():
    # Uniform logits over 4 tokens: every response token costs log 4; prompt tokens (-100) cost nothing.
    logits = torch.zeros(1, 4, 4)
    labels = torch.tensor([[-100, -100, 2, 3]])
    output = response_cross_entropy(logits, labels)
    assert output.mask.tolist() == [[False, True, True]]
    assert torch.allclose(output.sample_loss, torch.log(torch.tensor([4.0])))


def test_train_writes_the_run_and_learns(data_dir, tmp_path):
    summary = train(_config(data_dir, epochs=3), tmp_path / "run", progress=False)
    assert summary["steps"] == 3 * 6  # 48 samples / batch 8 = 6 steps per epoch
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["run"]["model"] == "llava:tiny" and saved["dataset"]["poison"]["attack"] == "badnet"
    assert "versions" in saved and "git_revision" in saved
    losses = [entry["task_loss"] for entry in summary["log"]]
    assert losses[-1] < losses[0] - 1.0
    assert (tmp_path / "run" / "model" / "vlshield_model.json").is_file()


def _train_command(data_dir: Path, out: Path, model: str = "llava:tiny") -> list[str]:
    return [
        sys.executable,
        "-m",
        "vlshield",
        "train",
        "--data",
        str(data_dir),
        "--model",
        model,
        "--out",
        str(out),
        "--quiet",
        "train.epochs=2",
        "train.batch_size=8",
        "train.checkpoint_every=4",
        "train.log_every=1",
    ]


# blip2 ties its output layer to its input embedding, which its checkpoints store once
@pytest.mark.parametrize("model", ["llava:tiny", "blip2:tiny"])
def test_killed_run_resumes_to_the_same_weights(data_dir, tmp_path, model):
    # Both runs in subprocesses with one thread: float sums depend on the thread count.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(_train_command(data_dir, tmp_path / "straight", model), env=env).returncode == 0
    command = _train_command(data_dir, tmp_path / "killed", model)
    process = subprocess.Popen(command, env=env)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(checkpoints.glob("step-*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(checkpoints.glob("step-*")), "the run was killed before its first checkpoint"
    assert not (tmp_path / "killed" / "model").exists(), "the run finished before it was killed"
    assert subprocess.run(command + ["--resume"], env=env).returncode == 0
    straight, resumed = _weights(tmp_path / "straight"), _weights(tmp_path / "killed")
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[key], resumed[key]) for key in straight)


def test_bad_input_gives_clear_errors_and_overwrites_nothing(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        train(RunConfig(data=str(data_dir), model="nope:tiny"), tmp_path / "a", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing train.jsonl, test_clean.jsonl, test_triggered.jsonl"):
        train(RunConfig(data=str(tmp_path / "empty")), tmp_path / "b", progress=False)
    run = tmp_path / "run"
    train(_config(data_dir, epochs=1), run, progress=False)
    before = (run / "config.json").read_bytes()
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.0 then, 0\.1 now"):
        train(_config(data_dir, epochs=1, lr=0.1), run, resume=True, progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_config(data_dir, epochs=1), run, progress=False)
    assert (run / "config.json").read_bytes() == before
    # A run started by other code (another source hash) is not resumed: it would mix two versions.
    record = json.loads(before)
    assert record["source_sha256"] == source_sha256()
    # ... and what else decides a CPU run's floats: the thread count and the kernels' instruction set
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    (run / "config.json").write_text(json.dumps({**record, "source_sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="started by other vlshield code"):
        train(_config(data_dir, epochs=1), run, resume=True, progress=False)


def test_model_image_size_must_fit_the_data(data_dir, tmp_path):
    saved = tmp_path / "model32"
    build_model("llava:tiny", texts=["a red box"], image_size=32).save(saved)
    with pytest.raises(ConfigError, match="takes 32 px images but .* has 64 px images"):
        train(RunConfig(data=str(data_dir), model=str(saved)), tmp_path / "run", progress=False)


def test_defense_loss_is_bit_identical_with_and_without_poison_flags(data_dir, tmp_path):
    # Strip the flags from the manifest: the defense's loss on a fixed batch must not change.
    stripped = tmp_path / "train.jsonl"
    lines = [json.loads(line) for line in (data_dir / "train.jsonl").read_text().splitlines()]
    stripped.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "poisoned"}) + "\n" for r in lines))
    (tmp_path / "images").symlink_to(data_dir / "images")
    losses = []
    for path in (data_dir / "train.jsonl", stripped):
        split = load_split(path)
        torch.manual_seed(0)
        bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
        defense = build_defense("pcr")
        defense.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=10, steps_per_epoch=5))
        indices = torch.arange(8)
        batch = Batch(indices, split.prompts[:8], split.responses[:8], split.float_images(indices))
        outputs = forward_views(bundle, batch, defense.views(batch, 0, torch.Generator().manual_seed(0)))
        weights, terms = defense.loss_terms(batch, outputs, 0)
        losses.append(torch.stack([outputs["original"].sample_loss.mean(), *terms.values()]))
    assert torch.equal(losses[0], losses[1])


def test_only_the_controls_are_handed_the_poison_flags(data_dir, tmp_path, monkeypatch):
    seen = {}
    original_setup = DefenseContext.__init__

    def spy(self, *args, **kwargs):
        original_setup(self, *args, **kwargs)
        seen["flags"] = self.poison_flags

    monkeypatch.setattr(DefenseContext, "__init__", spy)
    poisoned = [i for i, s in enumerate(load_split(data_dir / "train.jsonl").samples) if s.meta["poisoned"]]
    flagged, settings = {}, {}
    for name in ("pcr", "oracle", "random_flags"):
        config = RunConfig(
            data=str(data_dir), model="llava:tiny", defense=name, train=TrainConfig(epochs=1, batch_size=8)
        )
        summary = train(config, tmp_path / name, progress=False)
        flagged[name] = (seen["flags"], summary["defense"]["flagged_indices"])
        settings[name] = summary["defense"].get("config")
    assert flagged["pcr"][0] is None  # the defense itself never receives them
    # pcr's record holds its resolved settings, defaults included
    assert settings["pcr"] == to_dict(PCRConfig()) and settings["pcr"]["response_share"] == 0.15
    assert flagged["oracle"][1] == poisoned  # 6 of 48 (rate 0.125), flagged from step 0
    random_flags = flagged["random_flags"][1]
    assert len(random_flags) == len(poisoned) == 6 and random_flags != poisoned


def test_cosine_schedule_warms_up_decays_then_anneals_the_repair_steps():
    from vlshield.training.loop import cosine_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = cosine_schedule(optimizer, warmup_steps=1, total_steps=5, repair_steps=2, repair_peak=0.3)
    factors = []
    for _ in range(8):
        factors.append(round(scheduler.get_last_lr()[0], 4))
        optimizer.step()
        scheduler.step()
    # step 0: warm-up 1/2; steps 1..4: cosine over 4 steps (1, .8536, .5, .1464); 5, 6: repair cosine
    # from 0.3 over 2 steps (0.3, 0.15); then 0.
    assert factors == [0.5, 1.0, 0.8536, 0.5, 0.1464, 0.3, 0.15, 0.0]


def test_the_repair_epoch_runs_only_when_something_is_flagged(data_dir, tmp_path):
    # The oracle control flags the 6 poisoned samples from the start: it repairs. pcr flags nothing in
    # two epochs of 48 samples: no repair, and its run is the undefended one, weight for weight.
    # Checkpoints every 6 steps: pcr's run ends at step 12, a checkpoint step, and saves it again.
    runs = {}
    for name in ("oracle", "pcr", "none"):
        settings = TrainConfig(epochs=2, batch_size=8, log_every=1, checkpoint_every=6)
        config = RunConfig(data=str(data_dir), defense=name, train=settings)
        runs[name] = train(config, tmp_path / name, progress=False)
    oracle = runs["oracle"]
    assert oracle["epochs"] == 3 and oracle["repair_epochs"] == 1 and oracle["steps"] == 3 * 6
    lr = {entry["step"]: entry["lr"] for entry in oracle["log"]}  # the rate of the step after each entry
    assert lr[11] < 0.02 * oracle["lr"] and lr[12] == pytest.approx(0.3 * oracle["lr"]) and lr[18] == 0.0
    assert runs["pcr"]["defense"]["flagged_indices"] == []
    assert runs["pcr"]["epochs"] == 2 and runs["pcr"]["repair_epochs"] == 0 and runs["pcr"]["steps"] == 12
    assert [path.name for path in (tmp_path / "pcr" / "checkpoints").iterdir()] == ["step-0000012"]
    pcr, none = _weights(tmp_path / "pcr"), _weights(tmp_path / "none")
    assert all(torch.equal(pcr[key], none[key]) for key in none)


def test_a_scoring_view_over_some_rows_matches_the_full_view_on_them(data_dir):
    split = load_split(data_dir / "train.jsonl")
    bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
    indices = torch.arange(8)
    batch = Batch(indices, split.prompts[:8], split.responses[:8], split.float_images(indices))
    rows = torch.tensor([1, 4, 6])
    views = [
        View("all", batch.images.flip(-1), requires_grad=False),
        View("some", batch.images.flip(-1)[rows], requires_grad=False, rows=rows),
    ]
    outputs = forward_views(bundle, batch, views)
    assert outputs["some"].sample_loss.shape == (3,)
    assert torch.allclose(outputs["some"].sample_loss, outputs["all"].sample_loss[rows], atol=1e-5)
    with pytest.raises(ValueError, match="must cover every row"):
        forward_views(bundle, batch, [View("grad", batch.images[rows], requires_grad=True, rows=rows)])


def test_pcr_scores_the_chosen_fraction_of_each_batch(data_dir):
    split = load_split(data_dir / "train.jsonl")
    bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
    defense = build_defense("pcr", {"score_fraction": 0.5})
    defense.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=12, steps_per_epoch=6))
    indices = torch.arange(8, 16)
    batch = Batch(indices, split.prompts[8:16], split.responses[8:16], split.float_images(indices))
    views = defense.views(batch, 1, torch.Generator().manual_seed(0))
    assert len(views[0].rows) == 4 and views[0].images.shape[0] == 4
    defense.loss_terms(batch, forward_views(bundle, batch, views), 1)
    scored = (indices[views[0].rows]).tolist()
    assert sorted(i for i in range(len(split.samples)) if not np.isnan(defense.log_ratio[i])) == scored


def test_pcr_unlearns_with_a_partial_scoring_view_of_another_padded_length(data_dir):
    # Flagged short responses, scored over a few rows of the batch only: the image-free view
    # is padded to its own rows' length, and its tokens must still line up with the original's.
    split = load_split(data_dir / "train.jsonl")
    bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
    order = sorted(range(len(split.samples)), key=lambda i: len(split.responses[i]))
    chosen = order[:7] + order[-1:]  # the 7 shortest responses and the longest
    values = {}
    for fraction in (0.01, 1.0):
        defense = build_defense("pcr", {"score_fraction": fraction})
        defense.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=12, steps_per_epoch=6))
        defense.flagged[chosen[:2]] = True  # two short responses flagged
        defense.unlearning = True
        indices = torch.tensor(chosen)
        batch = Batch(
            indices,
            [split.prompts[i] for i in chosen],
            [split.responses[i] for i in chosen],
            split.float_images(indices),
        )
        with torch.no_grad():
            views = defense.views(batch, 1, torch.Generator().manual_seed(0))
            _, terms = defense.loss_terms(batch, forward_views(bundle, batch, views), 1)
        values[fraction] = terms["unlikelihood_loss"]
        if fraction < 1:  # one random row plus the two flagged: the longest response is not among them
            assert 7 not in views[0].rows.tolist() and len(views[0].rows) <= 3
    assert torch.allclose(values[0.01], values[1.0], atol=1e-5) and values[1.0] > 0


def test_pcr_no_image_view_scores_the_prompt_alone_and_unlearns_through_it(data_dir):
    split = load_split(data_dir / "train.jsonl")
    bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
    defense = build_defense("pcr", {"counterfactual": "no_image"})
    defense.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=12, steps_per_epoch=6))
    defense.flagged[[0, 1]] = True
    defense.unlearning = True
    indices = torch.arange(8)
    batch = Batch(indices, split.prompts[:8], split.responses[:8], split.float_images(indices))
    views = defense.views(batch, 1, torch.Generator().manual_seed(0))
    assert views[0].images is None
    outputs = forward_views(bundle, batch, views)
    text = bundle.text_batch(batch.prompts, batch.responses)
    expected = response_cross_entropy(bundle.text_logits(text), text["labels"])
    assert torch.allclose(outputs["counterfactual"].sample_loss, expected.sample_loss, atol=1e-6)
    # No image tokens: 64 fewer positions than the original view (64 px, 8 px patches).
    assert outputs["original"].logits.shape[1] - outputs["counterfactual"].logits.shape[1] == 64
    _, terms = defense.loss_terms(batch, outputs, 1)
    assert not np.isnan(defense.log_ratio[:8]).any() and np.isnan(defense.log_ratio[8:]).all()
    assert terms["unlikelihood_loss"] > 0  # response tokens lined up across the two prompt lengths
    with pytest.raises(ValueError, match="must not require gradients"):
        forward_views(bundle, batch, [View("text", None, requires_grad=True)])


def test_pcr_outside_its_scoring_epochs_views_only_the_flagged_samples_it_unlearns(data_dir):
    # Two epochs of 6 steps and one repair epoch; with score_every=2 the scoring epoch is epoch 1 only.
    split = load_split(data_dir / "train.jsonl")
    bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
    defense = build_defense("pcr", {"score_every": 2})
    defense.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=12, steps_per_epoch=6))
    indices = torch.arange(8)
    batch = Batch(indices, split.prompts[:8], split.responses[:8], split.float_images(indices))
    generator = torch.Generator().manual_seed(0)
    assert defense.views(batch, 1, generator) == []  # epoch 0: no view, no score
    weights, terms = defense.loss_terms(batch, forward_views(bundle, batch, []), 1)
    assert np.isnan(defense.log_ratio).all() and weights.tolist() == [1.0] * 8 and terms["unlikelihood_loss"] == 0
    assert len(defense.views(batch, 7, generator)[0].rows) == 8  # epoch 1 scores the whole batch
    defense.flagged[[2, 5]] = True
    defense.unlearning = True
    views = defense.views(batch, 13, generator)  # the repair epoch, the run's last: the flagged rows only
    assert views[0].rows.tolist() == [2, 5]
    _, terms = defense.loss_terms(batch, forward_views(bundle, batch, views), 13)
    assert terms["unlikelihood_loss"] > 0 and np.flatnonzero(~np.isnan(defense.log_ratio)).tolist() == [2, 5]


def test_unlearn_below_unlearns_only_the_flagged_samples_the_image_still_drives(data_dir):
    # Samples 2 and 5 flagged; after this batch's visit sample 2's log-ratio (EMA) sits at about -3
    # (an installed trigger's), sample 5's at about 0 (flagged before its backdoor installed).
    split = load_split(data_dir / "train.jsonl")
    bundle = build_model("llava:tiny", texts=split.prompts + split.responses, image_size=64, seed=0)
    indices = torch.arange(8)
    batch = Batch(indices, split.prompts[:8], split.responses[:8], split.float_images(indices))
    terms = {}
    for gate in (None, -1.0):
        defense = build_defense("pcr", {"unlearn_below": gate, "entropy_floor": 1.0})
        defense.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=12, steps_per_epoch=6))
        defense.flagged[[2, 5]] = True
        defense.unlearning = True
        defense.log_ratio[[2, 5]] = [-6.0, 0.0]  # the EMA halves it with this visit's (near 0, random model)
        with torch.no_grad():
            views = defense.views(batch, 1, torch.Generator().manual_seed(0))
            outputs = forward_views(bundle, batch, views)
            weights, terms[gate] = defense.loss_terms(batch, outputs, 1)
        assert defense.log_ratio[2] < -1.0 < defense.log_ratio[5]
        assert weights.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]  # both isolated either way
    # the gated run unlearns sample 2 alone: its terms are the ungated ones of that sample only
    alone = build_defense("pcr", {"entropy_floor": 1.0})  # a random model's entropy is near the maximum
    alone.setup(DefenseContext(bundle=bundle, train_size=len(split.samples), total_steps=12, steps_per_epoch=6))
    alone.flagged[2] = True
    alone.unlearning = True
    with torch.no_grad():
        alone.views(batch, 1, torch.Generator().manual_seed(0))  # the same rows: the whole batch
        _, only_two = alone.loss_terms(batch, outputs, 1)
    for name in ("suppression_loss", "unlikelihood_loss"):
        assert torch.allclose(terms[-1.0][name], only_two[name]) and terms[None][name] >= only_two[name]
    # sample 5's entropy term is what the gate leaves out
    assert terms[None]["suppression_loss"] > only_two["suppression_loss"] > 0
