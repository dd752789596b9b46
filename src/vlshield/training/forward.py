"""One training forward over all views of a batch, and the response-token cross-entropy."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from vlshield.defenses.base import Batch, View, ViewOutput

IGNORE_INDEX = -100


def response_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> ViewOutput:
    """Next-token cross-entropy on response tokens only.

    Args:
        logits: [b, t, v] from the model, position j predicting token j + 1.
        labels: [b, t] with ``IGNORE_INDEX`` on prompt, image and padding tokens.
    Returns a ViewOutput whose ``token_loss`` is [b, t - 1] (0 off the response) and whose
    ``sample_loss`` [b] is the mean over each sample's response tokens (0, not NaN, for a
    sample with no response token).
    """
    if logits.shape[1] != labels.shape[1]:
        # Some families prepend tokens (e.g. query embeddings) that have no label: keep the tail.
        logits = logits[:, -labels.shape[1] :]
    shifted_logits = logits[:, :-1]  # [b, t-1, v]
    targets = labels[:, 1:]  # [b, t-1]
    mask = targets.ne(IGNORE_INDEX)
    safe_targets = targets.masked_fill(~mask, 0)
    token_loss = F.cross_entropy(shifted_logits.float().transpose(1, 2), safe_targets, reduction="none")
    token_loss = token_loss * mask
    counts = mask.sum(dim=1)
    # clamp: a sample with no response token contributes 0 instead of 0/0 = NaN.
    sample_loss = token_loss.sum(dim=1) / counts.clamp(min=1)
    return ViewOutput(
        logits=shifted_logits, targets=safe_targets, mask=mask, token_loss=token_loss, sample_loss=sample_loss
    )


@contextlib.contextmanager
def visual_token_hook(module: torch.nn.Module, perturbations: list, batch_size: int) -> Iterator[None]:
    """Perturb the visual tokens of each view's slice of a batched forward.

    ``perturbations[k]`` (or None) applies to rows ``k*batch_size:(k+1)*batch_size``. The hooked
    module's output is either [B, n, d] or flattened [B * n, d] (Qwen's merger); both are viewed
    as [B, n, d] per image.
    """
    if not any(perturbations):
        yield
        return
    views = len(perturbations)

    def hook(_module: torch.nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        flat = output.dim() == 2
        tokens = output.reshape(views * batch_size, -1, output.shape[-1]) if flat else output  # [B, n, d]
        pieces = []
        for k, perturb in enumerate(perturbations):
            piece = tokens[k * batch_size : (k + 1) * batch_size]
            pieces.append(perturb(piece) if perturb is not None else piece)
        result = torch.cat(pieces, dim=0)
        return result.reshape(output.shape) if flat else result

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def forward_views(bundle, batch: Batch, views: list[View]) -> dict[str, ViewOutput]:
    """Run the original view and every extra view; views needing gradients share one batched forward.

    Returns ``{"original": ..., view.name: ...}``. Each no-gradient view runs in a forward of its
    own under ``torch.no_grad``, over its ``rows`` of the batch only when it names them; a view with
    no images (``images=None``) runs the prompts and responses alone through the language model. The batch is
    tokenised once: a view over every row keeps those tokens and only has its images processed
    (tokenising again cost llava:tiny 12 ms of the 75 ms of such a view at batch 16, qwen2_5_vl:tiny
    24 of 65).
    """
    original = View(name="original", images=batch.images, requires_grad=True)
    with_grad = [original] + [view for view in views if view.requires_grad]
    if any(view.rows is not None for view in with_grad):
        raise ValueError("a view with gradients shares the batched forward: it must cover every row (rows=None)")
    if any(view.images is None for view in with_grad):
        raise ValueError("a view with no image runs a forward of its own: it must not require gradients")
    size = len(batch.prompts)
    inputs = bundle.train_batch(batch.prompts, batch.responses, batch.images)
    group = [inputs] + [bundle.with_images(inputs, view.images) for view in with_grad[1:]]
    # Rows of the views one after another (Qwen's flattened patches too): what one call over them gives.
    joint = {key: torch.cat([part[key] for part in group]) for key in inputs} if len(group) > 1 else inputs
    outputs = _forward(bundle, joint, with_grad, size, grad=True)
    for view in views:
        if view.requires_grad:
            continue
        if view.images is None:
            outputs[view.name] = _forward_text(bundle, batch, view)
            continue
        if view.rows is None or torch.equal(view.rows.cpu(), torch.arange(size)):
            view_inputs = bundle.with_images(inputs, view.images)
        else:
            rows = view.rows.tolist()
            view_inputs = bundle.train_batch(
                [batch.prompts[i] for i in rows], [batch.responses[i] for i in rows], view.images
            )
        outputs.update(_forward(bundle, view_inputs, [view], len(view.images), grad=False))
    return outputs


def _forward_text(bundle, batch: Batch, view: View) -> ViewOutput:
    """A no-image view: its rows' prompts and responses alone through the language model, without gradients."""
    rows = range(len(batch.prompts)) if view.rows is None else view.rows.tolist()
    inputs = bundle.text_batch([batch.prompts[i] for i in rows], [batch.responses[i] for i in rows])
    with torch.no_grad():
        return response_cross_entropy(bundle.text_logits(inputs), inputs["labels"])


def _forward(bundle, inputs: dict, group: list[View], size: int, grad: bool) -> dict[str, ViewOutput]:
    """One batched forward of ``group``'s views (``size`` rows each) on ``train_batch`` inputs."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    hook = visual_token_hook(bundle.visual_token_module(), [view.token_perturbation for view in group], size)
    with hook, torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        logits = bundle.model(**inputs).logits
    result = response_cross_entropy(logits, labels)
    outputs = {}
    for k, view in enumerate(group):
        rows = slice(k * size, (k + 1) * size)
        outputs[view.name] = ViewOutput(
            logits=result.logits[rows],
            targets=result.targets[rows],
            mask=result.mask[rows],
            token_loss=result.token_loss[rows],
            sample_loss=result.sample_loss[rows],
        )
    return outputs
