"""Train a small byte-level BPE tokenizer on a dataset's text, for the tiny model presets.

Byte-level BPE covers every byte, so any prompt or response encodes without unknown tokens and
decodes back to the same text. Training on a few thousand short strings takes ~0.1 s and gives the
same vocabulary for the same texts (checked across processes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AddedToken, PreTrainedTokenizerFast


def train_tokenizer(
    texts: Iterable[str],
    *,
    special_tokens: Mapping[str, str],
    extra_special_tokens: Mapping[str, str] | None = None,
    more_special_tokens: Iterable[str] = (),
    vocab_size: int,
    add_bos_token: bool,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped as a Hugging Face fast tokenizer.

    Args:
        texts: the training corpus (prompts, responses, template words).
        special_tokens: role -> token for the roles ``pad_token``, ``bos_token``, ``eos_token``, ``unk_token``.
        extra_special_tokens: named model-specific tokens (``image_token`` -> ``"<image>"``); they become
            attributes of the tokenizer (``tokenizer.image_token``), which the HF processors read.
        more_special_tokens: special tokens with no named role (chat markers such as ``<|im_start|>``).
        vocab_size: upper bound on the vocabulary; a small corpus stops earlier.
        add_bos_token: whether encoding prepends the BOS token.
    """
    extra_special_tokens = dict(extra_special_tokens or {})
    # Ids 0.. go to the special tokens in this fixed order, so the ids do not depend on the corpus.
    ordered = list(dict.fromkeys([*special_tokens.values(), *extra_special_tokens.values(), *more_special_tokens]))
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(token, normalized=False, special=True) for token in ordered],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        extra_special_tokens=extra_special_tokens,
        add_bos_token=add_bos_token,
        add_eos_token=False,
        **special_tokens,
    )
