"""A small but real T5 tokenizer: SentencePiece-style unigram pieces, T5's special tokens
and its 100 sentinel tokens, as the T5 encoders of SD3 and FLUX use it."""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path

from tiny_models.bpe import CORPUS

SPECIALS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2, as in T5's own vocabulary


def t5_pieces() -> list[tuple[str, float]]:
    """Whole words of the corpus and single characters, scored by log frequency."""
    words = Counter(CORPUS.replace(",", " ").split())
    total = sum(words.values())
    pieces = [(f"\u2581{word}", math.log(count / total)) for word, count in words.most_common()]
    rare = math.log(1 / (10 * total))
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += [(char, rare) for char in chars] + [("\u2581", rare)]
    return [(token, 0.0) for token in SPECIALS] + pieces


def save_t5_tokenizer(folder: Path, max_length: int) -> int:
    """Write the tokenizer's files into ``folder``; returns the vocabulary size."""
    from transformers import T5Tokenizer

    tokenizer = T5Tokenizer(vocab=t5_pieces(), extra_ids=100, model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return len(tokenizer)
