"""Determinism, training steps, freezing, LoRA, bf16 and checkpointing for each family's tiny preset."""

import pytest
import torch

from .model_helpers import FAMILIES, PROMPTS, RESPONSES, make_images, solid_images, tiny, train_steps

LORA_LAYERS_PER_BLOCK = {"llava": 7, "qwen2_5_vl": 7, "blip2": 6}  # q k v o + gate up down / q k v out fc1 fc2


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def _with_prefix(names, prefixes):
    return [name for name in names if name.startswith(tuple(prefixes))]


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_identical_weights_and_another_seed_different(family):
    first, second, other = tiny(family, seed=0), tiny(family, seed=0), tiny(family, seed=1)
    state, same, different = (b.model.state_dict() for b in (first, second, other))
    assert state.keys() == same.keys() == different.keys()
    assert all(torch.equal(state[key], same[key]) for key in state)
    assert first.tokenizer.get_vocab() == second.tokenizer.get_vocab()
    weights = [key for key in state if key.endswith("weight") and state[key].std() > 0]  # not the LayerNorm ones
    assert all(not torch.equal(state[key], different[key]) for key in weights)


def test_building_does_not_touch_the_global_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny("llava", seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("family", FAMILIES)
def test_steps_reduce_the_loss_and_frozen_vision_stays_put(family):
    bundle = tiny(family, freeze_vision=True)
    adapter = bundle.adapter
    before = _snapshot(bundle.model)
    batch = bundle.train_batch(PROMPTS, RESPONSES, make_images(4))
    losses = train_steps(bundle, batch, steps=5)
    assert losses[-1] < losses[0] - 0.1
    after = _snapshot(bundle.model)
    vision = _with_prefix(before, adapter.vision_prefixes)
    assert vision and all(not bundle.model.get_parameter(n).requires_grad for n in vision)
    assert all(torch.equal(before[name], after[name]) for name in vision)
    for prefixes in (adapter.projector_prefixes, adapter.language_prefixes):
        trained = [name for name in _with_prefix(before, prefixes) if "embed_tokens" not in name]
        # every projector and language-model weight moved (token embeddings: only the rows used)
        assert trained and all(not torch.equal(before[name], after[name]) for name in trained), prefixes


@pytest.mark.parametrize("family", FAMILIES)
def test_freeze_projector_freezes_only_the_bridge(family):
    bundle = tiny(family, freeze_projector=True)
    names = dict(bundle.model.named_parameters())
    projector = _with_prefix(names, bundle.adapter.projector_prefixes)
    assert projector and not any(names[name].requires_grad for name in projector)
    assert all(names[name].requires_grad for name in names if name not in projector)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_adapts_only_language_model_layers(family):
    bundle = tiny(family, lora=True, lora_rank=4)
    base = bundle.model.get_base_model()
    adapter = bundle.adapter
    adapted = [name for name, module in base.named_modules() if hasattr(module, "lora_A")]
    layers = base.config.text_config.num_hidden_layers
    assert len(adapted) == layers * LORA_LAYERS_PER_BLOCK[family]
    assert all(name.startswith(adapter.language_prefixes) for name in adapted)
    parameters = dict(base.named_parameters())
    assert not any("lora_" in name for name in _with_prefix(parameters, adapter.vision_prefixes))
    assert not any("lora_" in name for name in _with_prefix(parameters, adapter.projector_prefixes))
    # Adapters train; the language model's own weights are frozen; the vision side still trains.
    for name in _with_prefix(parameters, adapter.language_prefixes):
        assert parameters[name].requires_grad == ("lora_" in name), name
    assert all(parameters[n].requires_grad for n in _with_prefix(parameters, adapter.vision_prefixes))

    before = _snapshot(base)
    train_steps(bundle, bundle.train_batch(PROMPTS, RESPONSES, make_images(4)), steps=2)
    after = _snapshot(base)
    lora_b = [name for name in before if "lora_B" in name]
    assert all(not torch.equal(before[name], after[name]) for name in lora_b)
    frozen = [name for name in _with_prefix(before, adapter.language_prefixes) if "lora_" not in name]
    assert all(torch.equal(before[name], after[name]) for name in frozen)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_trains_with_gradient_checkpointing(family):
    bundle = tiny(family, lora=True, lora_rank=4, gradient_checkpointing=True, freeze_vision=True)
    before = _snapshot(bundle.model)
    losses = train_steps(bundle, bundle.train_batch(PROMPTS, RESPONSES, make_images(4)), steps=5, lr=3e-3)
    after = _snapshot(bundle.model)
    assert losses[-1] < losses[0] - 0.1
    assert all(not torch.equal(before[name], after[name]) for name in before if "lora_B" in name)


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_weights_train_with_bfloat16_pixels(family):
    bundle = tiny(family, dtype="bfloat16")
    assert {parameter.dtype for parameter in bundle.model.parameters()} == {torch.bfloat16}
    batch = bundle.train_batch(PROMPTS, RESPONSES, make_images(4))
    assert batch["pixel_values"].dtype == torch.bfloat16
    losses = train_steps(bundle, batch, steps=3, lr=3e-3)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(family):
    plain, checkpointed = tiny(family), tiny(family, gradient_checkpointing=True)
    batch = plain.train_batch(PROMPTS, RESPONSES, make_images(4))
    gradients = []
    for bundle in (plain, checkpointed):
        bundle.model.train()
        loss = bundle.model(**batch).loss
        loss.backward()
        grads = {name: p.grad for name, p in bundle.model.named_parameters() if p.grad is not None}
        gradients.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = gradients
    assert checkpointed.model.is_activation_checkpointing
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_model_trained_to_name_the_image_colour_generates_it(family):
    """End to end: same prompt, the answer depends only on the image; training and generation agree."""
    bundle = tiny(family)
    prompts = ["what color is it?"] * 4
    answers = ["red", "green", "blue", "white"]
    images = solid_images([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
    batch = bundle.train_batch(prompts, answers, images)
    for _ in range(10):
        train_steps(bundle, batch, steps=10, lr=3e-3)
        if bundle.generate(prompts, images, max_new_tokens=8) == answers:
            break
    assert bundle.generate(prompts, images, max_new_tokens=8) == answers
